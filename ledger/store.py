"""The block store: one node's committed chain, its indexes and its history tree.

Theory of operation
-------------------
A store keeps, for every committed height: the header with its commit
certificate, the entry records in block order, the **history-tree nodes** that the
block's entries complete, and three indexes supplied by the caller in a
:class:`BlockIndex` (``ledger.store_types``): deposit code -> :class:`Location`
of the item, replay key -> :class:`EntryRef` of each non-deposit entry, and
case -> deposit codes.  The store never derives codes or keys or decides what a
case contains; the deterministic state layer does (``BlockIndex.from_effects``
adapts its ``BlockEffects``).  The store only checks that the index is coherent
with the block: every deposit item has exactly one code and every other entry one
replay key, each naming this block, none already taken, every case link naming a
known code.  :meth:`Store.has_code` answers ``ledger.state.ChainView`` for both
kinds of key, so a store can be handed to the state layer directly.

History tree.  Only *perfect* subtrees are stored, as nodes ``(level, index)``
(``ledger.merkle_nodes``): level 0 holds the entry leaf hashes, and a node never
changes once complete.  The root of any size, inclusion proofs and consistency
proofs are therefore served from O(log n) node reads, without recomputing the tree.

Append is all-or-nothing.  :meth:`Store.append` first computes and checks
everything (height = head + 1, ``prev_hash`` = hash of the head header, same
chain id, ``entry_count``, ``history_size`` = old size + entry count,
``entries_root`` over the block's entry leaves, ``history_root`` computed from
the stored nodes plus the new leaves, certificate for this header, index
coherence) and raises :class:`StoreError` naming the first disagreement, having
written nothing.  Only then does the backend write the block in one atomic step
(``LevelDBStore``: one synced ``WriteBatch``; ``MemoryStore``: dict updates that
cannot fail half-way).  Appends are serialised by a lock; reads may run
concurrently because everything below the head pointer is immutable.

Block inclusion proofs (an entry within its own block's entries tree) are
computed from that block's leaf hashes, which are exactly the level-0 history
nodes of the block's range ``[history_size - entry_count, history_size)``: no
second copy of the leaves is stored, at the cost of reading ``entry_count``
nodes (one range scan) per proof.

Errors.  Misuse and out-of-order appends raise :class:`StoreError`; a request
for a size or index beyond what is stored raises :class:`InputError`
(``reason="out_of_range"``); stored data that fails its checksum, does not
decode, or is missing where the head says it must exist raises
:class:`CorruptionError` naming the key.  Getters by height return ``None``
for heights that are not stored.

Backends implement the small set of ``_read_*``, ``_scan``, ``_commit`` and
``_close`` primitives at the bottom of :class:`Store`; validation, proofs and the
consistency check (:meth:`Store.check`) are shared, so both backends obey one
contract (``tests/unit/test_store_contract.py``).
"""

from __future__ import annotations

import abc
import threading
from operator import itemgetter
from typing import Any, Iterator, Sequence

from . import merkle
from .block import Block, BlockHeader, CommitCertificate
from .errors import InputError, StoreError
from .model import EntryRecord
from .store_check import run_check
from .store_types import (EMPTY_HEAD, ENTRY_KEY_SIZE, MAX_CODE_KEY, MAX_PAGE, AbsentCodes, AppendPlan, BlockIndex,
                          CheckReport, EntryRef, Head, Location, check_case, check_code_key, check_code_keys,
                          check_entry_key, check_index_cover, check_int, index_targets)

__all__ = ["AppendPlan", "BlockIndex", "CheckReport", "EMPTY_HEAD", "EntryRef", "Head", "Location", "Store"]


MAX_REPLICA_VALUE = 64 * 1024 * 1024


def _fail(reason: str, message: str) -> StoreError:
    return StoreError("append refused: " + message, reason=reason)


class Store(abc.ABC):
    """Interface and shared logic of every store backend (see the module docstring)."""

    def __init__(self) -> None:
        self._head = EMPTY_HEAD
        self._closed = False
        self._lock = threading.RLock()
        self._absent = AbsentCodes()
        self._sync = True  # False only inside write_group, for every write but the last

    # ------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the backend; idempotent.  Every later call raises StoreError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def _open_head(self) -> Head:
        if self._closed:
            raise StoreError("store is closed", reason="store_closed")
        return self._head

    # ---------------------------------------------------------------- append

    def append(self, block: Block, certificate: CommitCertificate, index: BlockIndex) -> Head:
        """Check ``block`` against the head and write it atomically; return the new head."""
        if not isinstance(block, Block) or not isinstance(certificate, CommitCertificate):
            raise TypeError("append() needs a Block and a CommitCertificate")
        if not isinstance(index, BlockIndex):
            raise TypeError("append() needs a BlockIndex")
        with self._lock:
            plan = self.prepare_append(block, certificate, index)
            self._commit(plan)
            self._absent.stored([code for code, _ in index.codes])  # before the head moves
            self._head = plan.head
            return plan.head

    def prepare_append(self, block: Block, certificate: CommitCertificate | None, index: BlockIndex) -> AppendPlan:
        """All checks of :meth:`append`, returning what it would write (writes nothing).

        With ``certificate=None`` it validates a *proposed* block against the head
        (history root included) before anyone has certified it.
        """
        head = self._open_head()
        self._check_link(head, block, certificate)
        leaves = block.leaf_hashes()
        if merkle.root(leaves) != block.header.entries_root:
            raise _fail("wrong_entries_root", "entries_root does not match the block's entries")
        nodes = merkle.new_nodes_for_append(head.history_size, leaves, self._read_node)
        size = block.header.history_size

        def get(level: int, idx: int) -> bytes:
            found = nodes.get((level, idx))
            return found if found is not None else self._read_node(level, idx)

        if merkle.root_from_nodes(size, get) != block.header.history_root:
            raise _fail("wrong_history_root", "history_root does not match the stored history plus this block")
        self._check_index(block, index)
        new_head = Head(block.header.height, block.header, block.header.hash(), size, block.header.history_root)
        return AppendPlan(block, certificate, index, nodes, new_head)

    def _check_link(self, head: Head, block: Block, certificate: CommitCertificate | None) -> None:
        header = block.header
        if header.height != head.height + 1:
            raise _fail("wrong_height", "height %d, expected %d" % (header.height, head.height + 1))
        if header.prev_hash != head.header_hash:
            raise _fail("wrong_prev_hash", "prev_hash does not match the head header at height %d" % head.height)
        if head.header is not None and header.chain_id != head.header.chain_id:
            raise _fail("wrong_chain", "chain id %r, store holds %r" % (header.chain_id, head.header.chain_id))
        if header.entry_count != len(block.records):
            raise _fail("wrong_entry_count", "header announces %d entries, block has %d"
                        % (header.entry_count, len(block.records)))
        if header.history_size != head.history_size + header.entry_count:
            raise _fail("wrong_history_size", "history_size %d, expected %d"
                        % (header.history_size, head.history_size + header.entry_count))
        if certificate is not None and certificate.header_hash != header.hash():
            raise _fail("certificate_mismatch", "the certificate is for another header")

    def _check_index(self, block: Block, index: BlockIndex) -> None:
        items, others = index_targets(block)
        check_index_cover(items, set(map(itemgetter(1), index.codes)), "deposit item")
        check_index_cover(others, {ref for _, ref in index.entry_keys}, "non-deposit entry")
        new_codes = {code for code, _ in index.codes}
        # Codes answered "absent" with no append since are absent now (AbsentCodes is
        # exact): only the others go to the backend (a validator asked at admission).
        _, unknown = self._absent.unknown([code for code, _ in index.codes])  # index.codes is sorted
        stored = self._present_codes(unknown) if unknown else []
        if stored:
            raise _fail("duplicate_code", "code %s is already stored" % stored[0].decode("ascii"))
        for key, _ in index.entry_keys:
            if self._read_entry_ref(key) is not None:
                raise _fail("duplicate_entry_key", "entry key %s is already stored" % key.hex())
        for case, code in index.cases:
            if code not in new_codes and self._read_location(code) is None:
                raise _fail("unknown_code", "case %r links unknown code %s" % (case, code.decode("ascii")))

    # ------------------------------------------------------ replica state

    def persist(self, writes: Any) -> None:
        """Durably apply the consensus replica's key/value writes in one atomic step.

        ``writes`` are ``(key, value)`` pairs (``consensus.io.Persist``); a value of
        ``None`` deletes the key.  Keys are text of at most 200 characters, values
        bytes of at most 64 MiB.  The write is synced before this returns: a vote
        is on disk before the message carrying it leaves the node.
        """
        checked = []
        for key, value in writes:
            if type(key) is not str or not 0 < len(key) <= 200:
                raise TypeError("replica state keys are non-empty str of at most 200 characters")
            if value is not None and (type(value) is not bytes or len(value) > MAX_REPLICA_VALUE):
                raise TypeError("replica state values are bytes of at most %d bytes, or None" % MAX_REPLICA_VALUE)
            checked.append((key, value))
        with self._lock:
            self._open_head()
            self._persist(checked)

    def write_group(self, ops: list[tuple], *, sync: bool = True) -> list[Head | None]:
        """Apply persists and appends in order, made durable together by one sync at the end.

        ``ops`` are ``("persist", writes)`` and ``("append", block, certificate, index)``;
        each is checked and applied exactly as :meth:`persist` / :meth:`append` would,
        but only the last is synced (group commit), then any log the backend left
        unsynced: when that returns every write of the group is on disk; after a
        crash, what survives is a prefix of the group.  Returns the new head of each
        append (``None`` for a persist).  An exception stops the group at the failing
        op; the earlier ones are applied (unsynced).

        ``sync=False`` syncs none of them: the caller makes the group durable with
        :meth:`sync` (the node does the Python work of a group on its event loop and
        only the sync on its writer thread, so the two never pass the GIL to and fro).
        """
        out: list[Head | None] = []
        with self._lock:
            try:
                for i, op in enumerate(ops):
                    self._sync = sync and i == len(ops) - 1
                    if op[0] == "persist":
                        self.persist(op[1])
                        out.append(None)
                    elif op[0] == "append":
                        out.append(self.append(op[1], op[2], op[3]))
                    else:
                        raise TypeError("unknown store op %r" % (op[0],))
                if sync and len(ops) > 1:
                    self._sync_older_logs()  # the earlier ops may sit in a log the backend moved on from
            finally:
                self._sync = True
        return out

    def replica_state(self) -> dict[str, bytes]:
        """Everything :meth:`persist` has kept, for rebuilding the replica after a restart."""
        with self._lock:
            self._open_head()
            return self._load_replica_state()

    # ----------------------------------------------------------------- reads

    def head(self) -> Head:
        return self._open_head()

    def _height_ok(self, height: Any) -> bool:
        return 1 <= check_int(height, "height") <= self._open_head().height

    def header(self, height: int) -> BlockHeader | None:
        return self._read_header_cert(height)[0] if self._height_ok(height) else None

    def certificate(self, height: int) -> CommitCertificate | None:
        return self._read_header_cert(height)[1] if self._height_ok(height) else None

    def records(self, height: int) -> tuple[EntryRecord, ...] | None:
        if not self._height_ok(height):
            return None
        return self._read_records(height, self._read_header_cert(height)[0].entry_count)

    def raw_records(self, height: int) -> list[bytes] | None:
        """The canonical encodings of block ``height``'s entry records, checked but not decoded."""
        if not self._height_ok(height):
            return None
        return self._read_raw_records(height, self._read_header_cert(height)[0].entry_count)

    def block(self, height: int) -> Block | None:
        if not self._height_ok(height):
            return None
        header = self._read_header_cert(height)[0]
        return Block(header, self._read_records(height, header.entry_count))

    def record(self, height: int, entry_index: int) -> EntryRecord | None:
        header = self.header(height)
        if header is None or not 0 <= check_int(entry_index, "entry_index") < header.entry_count:
            return None
        return self._read_record(height, entry_index)

    def history_index(self, height: int, entry_index: int) -> int | None:
        """Position of entry ``entry_index`` of block ``height`` in the history tree."""
        header = self.header(height)
        if header is None or not 0 <= check_int(entry_index, "entry_index") < header.entry_count:
            return None
        return header.history_size - header.entry_count + entry_index

    def locate(self, code_key: bytes) -> Location | None:
        head = self._open_head()
        loc = self._read_location(check_code_key(code_key))
        # A block being appended by another thread is visible in the backend just
        # before the head pointer moves: answer only for blocks at or below the head.
        return loc if loc is None or loc.height <= head.height else None

    def locate_entry(self, entry_key: bytes) -> EntryRef | None:
        head = self._open_head()
        ref = self._read_entry_ref(check_entry_key(entry_key))
        return ref if ref is None or ref.height <= head.height else None

    def has_code(self, key: bytes) -> bool:
        """``ledger.state.ChainView``: is ``key`` a stored code key or entry key?"""
        self._open_head()
        if type(key) is not bytes:
            raise TypeError("key must be bytes, got %s" % type(key).__name__)
        if len(key) == ENTRY_KEY_SIZE and self._read_entry_ref(key) is not None:
            return True
        return 0 < len(key) <= MAX_CODE_KEY and self._read_location(key) is not None

    def codes_present(self, keys: Sequence[bytes]) -> list[bytes]:
        """``ledger.state.ChainView`` in bulk: the deposit code keys among ``keys`` that are stored.

        One tight loop of backend lookups: a block of 2,000 items asks for 2,000 keys.
        """
        self._open_head()
        if not check_code_keys(keys):
            for key in keys:
                check_code_key(key)  # raises, naming the bad key
        absent = self._absent
        generation, unknown = absent.unknown(keys)
        found = self._present_codes(unknown) if unknown else []
        absent.learn(generation, unknown, found)
        return found

    def _present_codes(self, codes: Sequence[bytes]) -> list[bytes]:
        """Backends may override with a faster loop; the answer must be the same."""
        return [code for code in codes if self._read_location(code) is not None]

    def codes_for_case(self, case: str, *, limit: int = 100, after: bytes | None = None) -> list[bytes]:
        """Code keys linked to ``case`` in ascending order, at most ``limit`` of them,
        starting after the cursor ``after`` (pass the last key of the previous page)."""
        self._open_head()
        check_case(case)
        if not 1 <= check_int(limit, "limit") <= MAX_PAGE:
            raise InputError("limit must be in [1, %d]" % MAX_PAGE, reason="out_of_range", field="limit")
        if after is not None:
            check_code_key(after, "after")
        return self._read_case_codes(case, after, limit)

    # ---------------------------------------------------------------- proofs

    def _size(self, value: Any, where: str, lo: int = 0) -> int:
        top = self._open_head().history_size
        if not lo <= check_int(value, where) <= top:
            raise InputError("%s %d is outside [%d, %d] (the stored history)" % (where, value, lo, top),
                             reason="out_of_range", field=where)
        return value

    def history_node(self, level: int, index: int) -> bytes:
        """Stored perfect node ``(level, index)``; it must lie within the stored history."""
        check_int(level, "level")
        check_int(index, "index")
        if not 0 <= level < 64 or index < 0 or (index + 1) << level > self._open_head().history_size:
            raise InputError("node (%d, %d) is not a complete stored node" % (level, index), reason="out_of_range")
        return self._read_node(level, index)

    def history_root(self, size: int) -> bytes:
        return merkle.root_from_nodes(self._size(size, "size"), self._read_node)

    def inclusion_proof(self, history_index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``history_index`` in the history tree of ``size``."""
        self._size(size, "size", 1)
        if not 0 <= check_int(history_index, "history_index") < size:
            raise InputError("history_index %d is not below size %d" % (history_index, size),
                             reason="out_of_range", field="history_index")
        return merkle.inclusion_proof_from_nodes(history_index, size, self._read_node)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from the history tree of ``size1`` to that of ``size2``."""
        self._size(size2, "size2", 1)
        self._size(size1, "size1", 1)
        if size1 > size2:
            raise InputError("size1 %d exceeds size2 %d" % (size1, size2), reason="out_of_range", field="size1")
        return merkle.consistency_proof_from_nodes(size1, size2, self._read_node)

    def block_inclusion_proof(self, height: int, entry_index: int) -> list[bytes]:
        """Inclusion proof of an entry in its block's entries tree (root ``entries_root``)."""
        header = self.header(height)
        if header is None or not 0 <= check_int(entry_index, "entry_index") < header.entry_count:
            raise InputError("no entry %r in block %r" % (entry_index, height), reason="out_of_range")
        leaves = self._read_leaves(header.history_size - header.entry_count, header.history_size)
        return merkle.inclusion_proof(entry_index, leaves)

    # ----------------------------------------------------------------- check

    def check(self, deep: bool = False) -> CheckReport:
        """Verify the stored chain; every problem found is listed in the report.

        Always: every header decodes, links to its parent, has a matching
        certificate and a history root reproduced by the stored nodes; the head
        pointer matches the last block; nothing is stored beyond the head.
        ``deep`` also reads every record and checks the leaves, the entries roots,
        every stored interior node, and that the code and case indexes agree with
        the blocks (one code per deposit item, links to known codes).
        """
        return run_check(self, deep)

    # --------------------------------------------------- backend primitives

    @abc.abstractmethod
    def _close(self) -> None:
        ...

    def sync(self) -> None:
        """Make every write so far durable (after ``write_group(..., sync=False)``).

        Takes no lock: it runs on a writer thread while readers carry on (the
        backend is thread-safe), and only ``close`` must not race it."""
        self._open_head()
        self._sync_log()

    def _sync_log(self) -> None:
        """Backends with a write-ahead log sync it here; the memory store has nothing to do."""

    def _sync_older_logs(self) -> None:
        """Backends that move on to a new log file without syncing the old one sync it here."""

    @abc.abstractmethod
    def _commit(self, plan: AppendPlan) -> None:
        """Write ``plan`` atomically (all of it or nothing) and durably."""

    @abc.abstractmethod
    def _persist(self, writes: list[tuple[str, bytes | None]]) -> None:
        """Apply replica-state writes atomically and durably."""

    @abc.abstractmethod
    def _load_replica_state(self) -> dict[str, bytes]:
        ...

    @abc.abstractmethod
    def _read_header_cert(self, height: int) -> tuple[BlockHeader, CommitCertificate]:
        ...

    @abc.abstractmethod
    def _read_record(self, height: int, entry_index: int) -> EntryRecord:
        ...

    @abc.abstractmethod
    def _read_records(self, height: int, count: int) -> tuple[EntryRecord, ...]:
        ...

    def _read_raw_records(self, height: int, count: int) -> list[bytes]:
        """The stored encodings of a block's records (backends that keep bytes override this)."""
        return [r.encode() for r in self._read_records(height, count)]

    @abc.abstractmethod
    def _read_node(self, level: int, index: int) -> bytes:
        """A stored node; a missing one is a CorruptionError naming it."""

    @abc.abstractmethod
    def _read_leaves(self, begin: int, end: int) -> list[bytes]:
        ...

    @abc.abstractmethod
    def _read_location(self, code: bytes) -> Location | None:
        ...

    @abc.abstractmethod
    def _read_entry_ref(self, key: bytes) -> EntryRef | None:
        ...

    @abc.abstractmethod
    def _read_case_codes(self, case: str, after: bytes | None, limit: int) -> list[bytes]:
        ...

    @abc.abstractmethod
    def _scan(self, kind: str) -> Iterator[tuple[Any, Any]]:
        """Every stored item of ``kind``: ``"codes"`` (code, Location), ``"entry_keys"``
        (key, EntryRef), ``"cases"`` (case, code), ``"heights"``/``"records"``/``"nodes"``
        (id, None).  A value that fails to load is yielded as its CorruptionError."""
