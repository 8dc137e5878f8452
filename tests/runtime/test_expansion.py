"""Kubernetes' ``$(VAR)`` expansion, as a table."""

from __future__ import annotations

import pytest

from cortex.runtime.expansion import expand, expand_env

ENV = {"PORT": "8080", "NAME": "echo", "EMPTY": "", "DOLLAR": "$(PORT)"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("$(PORT)", "8080"),
        ("--port=$(PORT)", "--port=8080"),
        ("$(NAME)-$(PORT)", "echo-8080"),
        ("$(PORT)$(PORT)", "80808080"),
        ("$(EMPTY)x", "x"),
        ("$(MISSING)", "$(MISSING)"),
        ("a $(MISSING) b $(NAME)", "a $(MISSING) b echo"),
        ("$$(PORT)", "$(PORT)"),
        ("$$$(PORT)", "$8080"),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("cost: 5$", "cost: 5$"),
        ("$", "$"),
        ("$PORT", "$PORT"),
        ("${PORT}", "${PORT}"),
        ("$(PORT", "$(PORT"),
        ("$(", "$("),
        ("$()", "$()"),
        ("$(DOLLAR)", "$(PORT)"),  # a value is not expanded again
        ("$($(PORT)", "$($(PORT)"),  # the name runs to the first ")", "$(PORT", which is undefined
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_env_values_see_earlier_keys_in_sorted_order() -> None:
    values = {"B_URL": "http://$(HOST):$(PORT)", "A_HOST": "x", "C_LATER": "$(D_LAST)", "D_LAST": "d"}
    env = {"HOST": "localhost", "PORT": "1"}
    assert expand_env(values, env) == {
        "A_HOST": "x",
        "B_URL": "http://localhost:1",
        "C_LATER": "$(D_LAST)",  # D_LAST sorts after C_LATER: not defined yet
        "D_LAST": "d",
    }
    values = {"B": "$(A)/b", "A": "$(ROOT)/a"}
    assert expand_env(values, {"ROOT": "/r"}) == {"A": "/r/a", "B": "/r/a/b"}
