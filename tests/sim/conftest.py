"""Simulator test configuration: the ``soak`` marker (long seeded runs, opt-in)."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long simulator soak; run with `pytest tests/sim -m soak`")


def pytest_collection_modifyitems(config, items):
    if "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak run: select with -m soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
