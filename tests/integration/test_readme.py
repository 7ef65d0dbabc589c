"""The README's two set-up commands.

CI runs the second one itself (`.ci/run`: a fresh virtual environment, then
`pip install '.[test]' && pytest`). This module checks the README still says exactly
those two commands and runs the first one's verb through the installed console script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"```(?:sh|bash|console)?\n(.*?)\n```", text, re.S)
    assert match, "the README must start with a code block holding the set-up commands"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_readme_starts_with_exactly_the_two_contracted_commands():
    assert setup_commands() == ["pip install . && evledger demo", "pip install '.[test]' && pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet '.[test]' && pytest" in ci


def test_the_installed_console_script_runs_the_demo():
    script = Path(sys.executable).parent / "evledger"
    if not script.exists():
        script = shutil.which("evledger")
    if not script:
        pytest.skip("the package is not installed in this environment (CI installs it with pip install '.[test]')")
    result = subprocess.run([str(script), "demo", "--once"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "-> MATCH" in result.stdout and "-> MISMATCH" in result.stdout and "MALFORMED CODE" in result.stdout
    assert "stopped 5 node processes" in result.stdout
