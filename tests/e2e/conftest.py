"""Browser tests: register the ``e2e`` marker (also declared in pyproject.toml)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: real-browser tests of the litigant's page (headless chromium)")
