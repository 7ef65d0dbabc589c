"""The in-memory store: the whole ``ledger.store.Store`` contract over dicts.

It is the reference backend for tests and the simulator; ``LevelDBStore`` passes the
same contract suite (``tests/unit/test_store_contract.py``).
"""

from __future__ import annotations

from typing import Any, Iterator

from .block import Block, BlockHeader, CommitCertificate
from .errors import CorruptionError
from .model import EntryRecord
from .store import AppendPlan, Store
from .store_types import EntryRef, Location


class MemoryStore(Store):
    """Dict-backed store with the full contract: the reference for tests and the simulator."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[tuple[Block, CommitCertificate]] = []
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._codes: dict[bytes, Location] = {}
        self._entry_keys: dict[bytes, EntryRef] = {}
        self._cases: dict[str, set[bytes]] = {}
        self._replica: dict[str, bytes] = {}

    def _close(self) -> None:
        pass

    def _persist(self, writes: list[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self._replica.pop(key, None)
            else:
                self._replica[key] = value

    def _load_replica_state(self) -> dict[str, bytes]:
        return dict(self._replica)

    def _commit(self, plan: AppendPlan) -> None:
        self._blocks.append((plan.block, plan.certificate))
        self._nodes.update(plan.nodes)
        self._codes.update(plan.index.codes)
        self._entry_keys.update(plan.index.entry_keys)
        for case, code in plan.index.cases:
            self._cases.setdefault(case, set()).add(code)

    def _read_header_cert(self, height: int) -> tuple[BlockHeader, CommitCertificate]:
        block, cert = self._blocks[height - 1]
        return block.header, cert

    def _read_record(self, height: int, entry_index: int) -> EntryRecord:
        return self._blocks[height - 1][0].records[entry_index]

    def _read_records(self, height: int, count: int) -> tuple[EntryRecord, ...]:
        return self._blocks[height - 1][0].records

    def _read_node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise CorruptionError("history node (%d, %d) is missing" % (level, index)) from None

    def _read_leaves(self, begin: int, end: int) -> list[bytes]:
        return [self._read_node(0, i) for i in range(begin, end)]

    def _read_location(self, code: bytes) -> Location | None:
        return self._codes.get(code)

    def _read_entry_ref(self, key: bytes) -> EntryRef | None:
        return self._entry_keys.get(key)

    def _read_case_codes(self, case: str, after: bytes | None, limit: int) -> list[bytes]:
        codes = sorted(c for c in self._cases.get(case, ()) if after is None or c > after)
        return codes[:limit]

    def _scan(self, kind: str) -> Iterator[tuple[Any, Any]]:
        if kind == "codes":
            return iter(sorted(self._codes.items()))
        if kind == "entry_keys":
            return iter(sorted(self._entry_keys.items()))
        if kind == "cases":
            return iter(sorted((case, code) for case, codes in self._cases.items() for code in codes))
        if kind == "heights":
            return iter([(h, None) for h in range(1, len(self._blocks) + 1)])
        if kind == "records":
            return iter([((h, e), None) for h, (b, _) in enumerate(self._blocks, 1) for e in range(len(b.records))])
        if kind == "nodes":
            return iter([(node, None) for node in sorted(self._nodes)])
        raise ValueError("unknown scan kind %r" % kind)
