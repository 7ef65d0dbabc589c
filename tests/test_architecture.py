"""The layering of the code base, checked by reading imports with ``ast``.

* ``ledger/`` imports nothing from ``consensus``, ``node``, ``cli`` or ``services``.
* ``consensus/`` imports no I/O, clock or randomness (it is a pure state machine)
  and nothing from ``node``, ``cli`` or ``services``.
* ``plyvel`` is imported only by ``ledger/leveldb_store.py``.
* ``services/`` use only the client API (``services.client``) and ``ledger``'s
  pure verification modules, never storage, consensus or the node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IO_MODULES = {"asyncio", "aiohttp", "socket", "plyvel", "time", "random", "threading", "os", "subprocess", "select",
              "selectors", "datetime", "secrets", "uuid"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                package = path.parent.relative_to(ROOT).parts
                base = package[: len(package) - (node.level - 1)]
                found.add(".".join(base + ((node.module,) if node.module else ())))
            elif node.module:
                found.add(node.module)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_there_is_code_to_check():
    assert sources("ledger"), "ledger/ must exist"


@pytest.mark.parametrize("path", sources("ledger"), ids=lambda p: p.name)
def test_ledger_depends_on_nothing_above_it(path):
    bad = {m for m in imports_of(path) if top(m) in {"consensus", "node", "cli", "services"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources("consensus"), ids=lambda p: p.name)
def test_consensus_is_sans_io(path):
    found = imports_of(path)
    bad = {m for m in found if top(m) in IO_MODULES | {"node", "cli", "services"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: consensus must stay a pure state machine"


def test_only_the_leveldb_store_imports_plyvel():
    allowed = ROOT / "ledger" / "leveldb_store.py"
    offenders = []
    for folder in ("ledger", "consensus", "services"):
        for path in sources(folder):
            if path != allowed and "plyvel" in {top(m) for m in imports_of(path)}:
                offenders.append(str(path.relative_to(ROOT)))
    for path in (ROOT / "node.py", ROOT / "cli.py"):
        if path.exists() and "plyvel" in {top(m) for m in imports_of(path)}:
            offenders.append(path.name)
    assert not offenders, f"plyvel imported outside ledger/leveldb_store.py: {offenders}"


SERVICE_ALLOWED_LEDGER = {"ledger.codes", "ledger.merkle", "ledger.crypto", "ledger.codec", "ledger.errors",
                          "ledger.receipt", "ledger.model", "ledger.block", "ledger.wire"}


@pytest.mark.parametrize("path", sources("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_are_ledger_clients(path):
    for module in imports_of(path):
        if top(module) in {"consensus", "node", "plyvel"}:
            pytest.fail(f"{path.relative_to(ROOT)} imports {module}: services are clients of the ledger API")
        if top(module) == "ledger" and module not in SERVICE_ALLOWED_LEDGER:
            pytest.fail(f"{path.relative_to(ROOT)} imports {module}: services may not reach into storage or state")


def test_the_checker_sees_relative_imports(tmp_path):
    # The checker itself must be able to fail: a relative import of consensus from
    # a file inside ledger/ resolves to "consensus..." only if resolution is right.
    fake = ROOT / "ledger" / "codec.py"
    found = imports_of(fake)
    assert "ledger.errors" in found
