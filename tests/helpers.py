"""Shared test helpers: deploying a spec straight into a catalog, a tiny config."""

from __future__ import annotations

import textwrap

from cortex.spec import ApiSpec, load_text
from cortex.store.base import Catalog


def api_yaml(
    name: str = "echo", *, extra: str = "", port: int = 8080, concurrency: int = 1, container: str = ""
) -> str:
    """One API's YAML; ``extra`` adds top-level keys, ``container`` adds keys to its one container."""
    body = f"""
    - name: {name}
      kind: AsyncAPI
      pod:
        port: {port}
        max_concurrency: {concurrency}
        containers:
          - name: api
            command: ["python", "server.py"]
    """
    text = textwrap.dedent(body)
    if container:
        text += textwrap.indent(textwrap.dedent(container).strip("\n"), " " * 8) + "\n"
    return text + textwrap.indent(textwrap.dedent(extra), "  ")


async def deploy(catalog: Catalog, yaml_text: str) -> ApiSpec:
    (spec,) = load_text(yaml_text, "test.yaml")
    await catalog.put_api(spec.name, spec.to_dict(), spec.spec_id(), now=0.0)
    return spec
