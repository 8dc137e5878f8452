"""The scheduling examples of docs/kubernetes.md validate and render to strictly valid Deployments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cortex.runtime.kubeobjects import KubeSettings, api_objects
from cortex.spec import load_text
from tests.kube.schemas import validation_error

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
#: the API the examples' fragments (node_groups, kubernetes) belong to
BASE = """
- name: transcriber
  kind: AsyncAPI
  pod:
    containers:
      - name: model
        image: registry.example.com/whisper:1.2
        compute: {cpu: "2", mem: 8Gi, gpu: 1}
"""
EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_its_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{n}" for n in range(len(EXAMPLES))])
def test_each_scheduling_example_renders(example: str) -> None:
    text = example if example.startswith("- name") else BASE + example
    (spec,) = load_text(text, "docs/kubernetes.md")
    (deployment,) = api_objects(spec, deployment_id="d", replicas=1, settings=KubeSettings())
    assert validation_error(deployment) is None
    assert not spec.kubernetes.is_default()
