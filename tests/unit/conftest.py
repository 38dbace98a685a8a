"""Every test in this folder is a pure domain unit test: it needs no database."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/unit" in item.path.as_posix():
            item.add_marker(pytest.mark.unit)
