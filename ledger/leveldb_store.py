"""LevelDB backend of the block store (the only module that imports plyvel).

Theory of operation
-------------------
All keys start with a one-byte prefix naming the kind of record; integers in
keys are big-endian and fixed-width, so LevelDB's byte order is numeric order and
one range scan yields a block's records or a run of leaves in order::

    m format                      ["evledger-store", 1]          format version
    m head                        [height, header_hash, history_size, history_root]
    h height:u64                  [header_wire, certificate_wire]
    e height:u64 entry:u32        EntryRecord.encode()
    t level:u8 index:u64          32-byte history-tree node hash
    c code                        [height, entry_index, item_index]
    r entry_key(32)               [height, entry_index]          replay keys
    k case(UTF-8) 0x00 code       empty (the key is the link)

Payloads are canonical msgpack (``ledger.codec``) unless noted.  Every stored
value is ``checksum(8) || payload`` with
``checksum = SHA-256(len(key):u16 || key || payload)[:8]``: covering the key as
well catches a value that ended up under another key (misdirected write,
hand-edited or mixed-up restore), and 64 bits make an undetected random
corruption practically impossible (CRC32 would miss one in 2**32).  LevelDB's own
block CRCs are verified on every read as well (``verify_checksums``,
``paranoid_checks``).  A 10-bit Bloom filter per table keeps the misses that
every append checks (is this new code already taken?) off the disk.  A mismatch raises ``CorruptionError`` naming the key
(e.g. ``e/12/3``); corrupted data is never returned.

Durability.  One append is one ``WriteBatch`` (header, certificate, records,
new history nodes, code and case links, head pointer): LevelDB logs the batch as
one checksummed record, and on recovery replays whole records only.  Written with
``sync=True`` (the default) it is fsynced before returning, so after a crash the
store holds exactly the blocks whose append returned, plus possibly the one in
flight, each whole or absent.  The node writes groups with ``sync=False`` and calls
:meth:`sync`, which makes every earlier write durable; after a power cut, what
survives is a prefix of the writes (``runtime/durable.py``).  On open the head pointer must name a stored
block whose hash, history size and root it repeats, the stored nodes must
reproduce that root, and nothing may be stored past it; otherwise open fails
with ``CorruptionError``.  A failed write closes the store: the node must reopen
(and re-read the head) rather than guess what reached the disk.

A database whose format key names another version is refused with a
``StoreError`` (``reason="unsupported_format"``) before anything is read.
LevelDB's lock file keeps a second process out (``reason="store_locked"``).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Iterator, Sequence

import plyvel

from . import merkle
from .block import BlockHeader, CommitCertificate
from .code_filter import CodeFilter
from .codec import Fields, Limits, decode, encode, encode_wire, small_packer
from .errors import CorruptionError, DecodeError, StoreError
from .leveldb_keys import (CHECKSUM_SIZE, case_prefix, code_key, describe_key, entry_key_key, header_key, node_key,
                           parse, record_key, seal, u64, unseal)
from .model import EntryRecord
from .store import EMPTY_HEAD, AppendPlan, EntryRef, Head, Location, Store
from .wire import from_wire

FORMAT_TAG = "evledger-store"
FORMAT_VERSION = 1
KEY_FORMAT = b"mformat"
KEY_HEAD = b"mhead"
# Our own, checksummed data: bounds only to keep a corrupt length from allocating.
STORE_LIMITS = Limits(max_bytes=1 << 30, max_str=64 * 1024, max_bin=4 * 1024 * 1024,
                      max_array=1_000_000, max_map=1024)


def _header_cert(payload: bytes) -> tuple[BlockHeader, CommitCertificate]:
    fields = Fields("stored_block", decode(payload, STORE_LIMITS, typed=True), 2)
    header_items, _ = fields.raw("header")
    cert_items, _ = fields.raw("certificate")
    return from_wire(BlockHeader, header_items), CommitCertificate.from_wire(cert_items)


def _ints(count: int) -> Callable[[bytes], list]:
    def reader(payload: bytes) -> list:
        items = decode(payload, STORE_LIMITS)
        if not isinstance(items, list) or len(items) != count or any(type(v) is not int for v in items):
            raise DecodeError("expected %d integers" % count)
        return items

    return reader


def _node(payload: bytes) -> bytes:
    if len(payload) != merkle.HASH_SIZE:
        raise DecodeError("a node is %d bytes, got %d" % (merkle.HASH_SIZE, len(payload)))
    return payload


def _format_value(payload: bytes) -> list:
    items = decode(payload, STORE_LIMITS)
    if not isinstance(items, list) or len(items) != 2:
        raise DecodeError("expected [tag, version]")
    return items


def _head_value(payload: bytes) -> list:
    items = decode(payload, STORE_LIMITS)
    if not isinstance(items, list) or len(items) != 4:
        raise DecodeError("expected [height, header_hash, history_size, history_root]")
    return items


class LevelDBStore(Store):
    """Store on a LevelDB folder; create with :meth:`open`."""

    def __init__(self, db: Any, path: str):
        super().__init__()
        self._db = db
        self.path = path
        self.code_filter = CodeFilter()  # every stored code key: filled by open() and _commit()

    def __repr__(self) -> str:
        return "LevelDBStore(%r)" % self.path

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = True) -> "LevelDBStore":
        """Open (creating the folder and an empty store if ``create``) and verify the head."""
        path = os.fspath(path)
        if create:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise StoreError("cannot create store folder %s: %s" % (path, exc), reason="store_missing") from None
        elif not os.path.isdir(path):
            raise StoreError("no store at %s" % path, reason="store_missing")
        try:
            # No compression: what we store is mostly digests, signatures and codes, which
            # Snappy cannot shrink but still has to try on every compaction.  With it off
            # and an 8 MiB memtable (tables stay at LevelDB's 2 MiB), appending a million
            # deposit items costs 3.2 s of compaction CPU instead of 12.5 s, for 30 % more
            # disk (113 against 86 MB; docs/performance.md).  A 16 MiB memtable with 8 MiB
            # tables and compression made each compaction a multi-second burst of CPU.
            # The block cache is 8 MiB: appends and the filtered duplicate checks hardly
            # read, and reads of uncompressed tables are served from the OS page cache
            # (outside the node's RSS, which must stay under 200 MB).
            db = plyvel.DB(path, create_if_missing=create, paranoid_checks=True, bloom_filter_bits=10,
                          lru_cache_size=8 * 1024 * 1024, compression=None, write_buffer_size=8 * 1024 * 1024)
        except plyvel.IOError as exc:
            raise StoreError("cannot open store at %s (in use by another process?): %s" % (path, exc),
                             reason="store_locked") from None
        except plyvel.CorruptionError as exc:
            raise CorruptionError("LevelDB reports corruption in %s: %s" % (path, exc)) from None
        except plyvel.Error as exc:
            raise StoreError("cannot open store at %s: %s" % (path, exc)) from None
        store = cls(db, path)
        try:
            store._init_format()
            store._head = store._load_head()
            # The scan reads every code key once: it must not push useful blocks out of the cache.
            store.code_filter.add(key[1:] for key in store._iter(prefix=code_key(b""), include_value=False,
                                                                 fill_cache=False))
        except BaseException:
            db.close()
            raise
        return store

    # ------------------------------------------------------------ raw access

    def _get(self, key: bytes) -> bytes | None:
        try:
            value = self._db.get(key, verify_checksums=True)
        except RuntimeError:
            raise StoreError("store is closed", reason="store_closed") from None
        except plyvel.CorruptionError as exc:
            name = describe_key(key)
            raise CorruptionError("LevelDB reports corruption reading key %s: %s" % (name, exc), field=name) from None
        return None if value is None else unseal(key, value)

    def _load(self, key: bytes, reader: Callable[[bytes], Any]) -> Any:
        payload = self._get(key)
        if payload is None:
            name = describe_key(key)
            raise CorruptionError("key %s is missing" % name, field=name)
        return parse(key, payload, reader)

    def _iter(self, **kwargs: Any) -> Iterator:
        try:
            with self._db.iterator(verify_checksums=True, **kwargs) as it:
                yield from it
        except RuntimeError:
            raise StoreError("store is closed", reason="store_closed") from None
        except plyvel.CorruptionError as exc:
            raise CorruptionError("LevelDB reports corruption during a scan: %s" % exc) from None

    def _first_key(self, start: bytes, stop: bytes) -> bytes | None:
        for key in self._iter(start=start, stop=stop, include_value=False):
            return key
        return None

    # -------------------------------------------------------------- open

    def _init_format(self) -> None:
        if self._get(KEY_FORMAT) is None:
            if next(self._iter(include_value=False), None) is not None:
                raise StoreError("%s holds a LevelDB database that is not an evledger store (no format key)"
                                 % self.path, reason="unsupported_format")
            self._db.put(KEY_FORMAT, seal(KEY_FORMAT, encode([FORMAT_TAG, FORMAT_VERSION])), sync=True)
        tag, version = self._load(KEY_FORMAT, _format_value)
        if tag != FORMAT_TAG or type(version) is not int:
            raise StoreError("%s is not an evledger store (format key %r)" % (self.path, tag),
                             reason="unsupported_format")
        if version != FORMAT_VERSION:
            raise StoreError("%s has store format version %d; this software reads version %d only"
                             % (self.path, version, FORMAT_VERSION), reason="unsupported_format")

    def _load_head(self) -> Head:
        if self._get(KEY_HEAD) is None:
            if self._first_key(b"h", b"i") is not None:
                raise CorruptionError("blocks are stored but the head pointer (m/head) is missing", field="m/head")
            return EMPTY_HEAD
        height, header_hash, size, root = self._load(KEY_HEAD, _head_value)
        header, _ = self._read_header_cert(height)
        if (header.height, header.hash(), header.history_size, header.history_root) != (height, header_hash, size,
                                                                                           root):
            raise CorruptionError("head pointer m/head disagrees with block h/%d" % height, field="m/head")
        for start, stop in ((header_key(height + 1), b"i"), (record_key(height + 1, 0), b"f"),
                            (node_key(0, size), node_key(1, 0))):
            stray = self._first_key(start, stop)
            if stray is not None:
                raise CorruptionError("key %s is stored beyond the head (height %d, history size %d)"
                                      % (describe_key(stray), height, size), field=describe_key(stray))
        if merkle.root_from_nodes(size, self._read_node) != root:
            raise CorruptionError("stored history nodes do not reproduce the head's history root", field="m/head")
        return Head(height, header, header_hash, size, root)

    def _close(self) -> None:
        self._db.close()

    # ------------------------------------------------------ replica state (prefix p)

    def _sync_log(self) -> None:
        # LevelDB's log is sequential: a synced write (the format record again,
        # unchanged) makes every earlier unsynced write in the same log file durable.
        try:
            self._db.put(KEY_FORMAT, self._db.get(KEY_FORMAT), sync=True)
        except (plyvel.Error, RuntimeError) as exc:
            self.close()
            raise StoreError("syncing the store failed, store closed (reopen it): %s" % exc,
                             reason="write_failed") from None
        self._sync_older_logs()  # after: the put itself may have switched to a new log

    def _sync_older_logs(self) -> None:
        """fsync every log file but the newest: LevelDB moves on to a new log without syncing
        the old one (google/leveldb#193), where a group's earlier writes may sit.  A log
        that is gone was compacted into a table, which LevelDB syncs before deleting it."""
        try:
            logs = sorted((n for n in os.listdir(self.path) if n.endswith(".log")), key=lambda n: (len(n), n))
            for name in logs[:-1]:
                try:
                    fd = os.open(os.path.join(self.path, name), os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            self.close()
            raise StoreError("syncing an older log of the store failed, store closed (reopen it): %s" % exc,
                             reason="write_failed") from None

    def _persist(self, writes: list[tuple[str, bytes | None]]) -> None:
        try:
            with self._db.write_batch(sync=self._sync, transaction=True) as batch:
                for key, value in writes:
                    raw = b"p" + key.encode("utf-8")
                    if value is None:
                        batch.delete(raw)
                    else:
                        batch.put(raw, seal(raw, value))
        except RuntimeError:
            raise StoreError("store is closed", reason="store_closed") from None
        except plyvel.Error as exc:
            raise StoreError("writing replica state failed: %s" % exc, reason="write_failed") from None

    def _load_replica_state(self) -> dict[str, bytes]:
        out = {}
        for raw, value in self._iter(prefix=b"p"):
            out[raw[1:].decode("utf-8")] = unseal(raw, value)
        return out

    # ------------------------------------------------------------- write

    def _commit(self, plan: AppendPlan) -> None:
        header = plan.block.header
        height = header.height
        batch = self._db.write_batch(sync=self._sync)

        def put(key: bytes, payload: bytes) -> None:
            batch.put(key, seal(key, payload))

        put(header_key(height), encode([header.wire(), plan.certificate.wire()]))
        for i, record in enumerate(plan.block.records):
            put(record_key(height, i), record.encode())
        for (level, index), value in plan.nodes.items():
            put(node_key(level, index), value)
        # The hot loop (one put per deposit item), with put/seal/checksum inlined.  Locations
        # are checked ints, so msgpack's own packing of the tuple is their canonical form.
        batch_put, sha256, packb = batch.put, hashlib.sha256, small_packer()  # one Packer, not one a put
        self.code_filter.add(code for code, _ in plan.index.codes)  # before the write: never a false "absent"
        for code, loc in plan.index.codes:
            key = b"c" + code
            payload = packb(loc)
            batch_put(key, sha256(len(key).to_bytes(2, "big") + key + payload).digest()[:CHECKSUM_SIZE] + payload)
        for key, ref in plan.index.entry_keys:
            put(entry_key_key(key), encode_wire(list(ref)))
        for case, code in plan.index.cases:
            put(case_prefix(case) + code, b"")
        head = plan.head
        put(KEY_HEAD, encode([height, head.header_hash, head.history_size, head.history_root]))
        try:
            batch.write()
        except (plyvel.Error, RuntimeError) as exc:
            self.close()
            raise StoreError("writing block %d failed, store closed (reopen it): %s" % (height, exc),
                             reason="write_failed") from None

    # -------------------------------------------------------------- reads

    def _read_header_cert(self, height: int) -> tuple[BlockHeader, CommitCertificate]:
        header, cert = self._load(header_key(height), _header_cert)
        if header.height != height:
            raise CorruptionError("header at key h/%d claims height %d" % (height, header.height),
                                  field="h/%d" % height)
        return header, cert

    def _read_record(self, height: int, entry_index: int) -> EntryRecord:
        return self._load(record_key(height, entry_index), lambda p: EntryRecord.decode(p, STORE_LIMITS))

    def _read_records(self, height: int, count: int) -> tuple[EntryRecord, ...]:
        return tuple(parse(record_key(height, i), payload, lambda p: EntryRecord.decode(p, STORE_LIMITS))
                     for i, payload in enumerate(self._read_raw_records(height, count)))

    def _read_raw_records(self, height: int, count: int) -> list[bytes]:
        prefix = b"e" + u64(height)
        records = []
        for key, value in self._iter(prefix=prefix):
            if key != record_key(height, len(records)):
                break
            records.append(unseal(key, value))
        if len(records) != count:
            name = describe_key(record_key(height, len(records)))
            raise CorruptionError("block %d announces %d records; key %s is missing or misplaced"
                                  % (height, count, name), field=name)
        return records

    def _read_node(self, level: int, index: int) -> bytes:
        return self._load(node_key(level, index), _node)

    def _read_leaves(self, begin: int, end: int) -> list[bytes]:
        leaves = []
        for key, value in self._iter(start=node_key(0, begin), stop=node_key(0, end)):
            if key != node_key(0, begin + len(leaves)):
                break
            leaves.append(parse(key, unseal(key, value), _node))
        if len(leaves) != end - begin:
            name = describe_key(node_key(0, begin + len(leaves)))
            raise CorruptionError("history leaf %s is missing" % name, field=name)
        return leaves

    def _read_location(self, code: bytes) -> Location | None:
        key = code_key(code)
        payload = self._get(key)
        return None if payload is None else Location(*parse(key, payload, _ints(3)))

    def _present_codes(self, codes: Sequence[bytes]) -> list[bytes]:
        # Only the codes the filter cannot rule out are read (ledger/code_filter.py: the
        # reads of absent keys were most of LevelDB's compaction work, by seek compactions).
        codes = self.code_filter.maybe_present(codes)
        get = self._db.get
        try:
            found = [code for code in codes if get(b"c" + code, verify_checksums=True) is not None]
        except RuntimeError:
            raise StoreError("store is closed", reason="store_closed") from None
        except plyvel.CorruptionError as exc:
            raise CorruptionError("LevelDB reports corruption reading code keys: %s" % exc) from None
        return [code for code in found if self._read_location(code) is not None]  # checksums of the hits

    def _read_entry_ref(self, key: bytes) -> EntryRef | None:
        full = entry_key_key(key)
        payload = self._get(full)
        return None if payload is None else EntryRef(*parse(full, payload, _ints(2)))

    def _read_case_codes(self, case: str, after: bytes | None, limit: int) -> list[bytes]:
        prefix = case_prefix(case)
        start = prefix + after if after is not None else prefix
        codes = []
        for key, value in self._iter(start=start, stop=prefix[:-1] + b"\x01", include_start=after is None):
            unseal(key, value)
            codes.append(key[len(prefix):])
            if len(codes) == limit:
                break
        return codes

    def _scan(self, kind: str) -> Iterator[tuple[Any, Any]]:
        if kind in ("heights", "records", "nodes"):
            prefix, size = {"heights": (b"h", 9), "records": (b"e", 13), "nodes": (b"t", 10)}[kind]
            for key in self._iter(prefix=prefix, include_value=False):
                if len(key) != size:
                    yield key, CorruptionError("malformed key %r" % key)
                elif kind == "heights":
                    yield int.from_bytes(key[1:], "big"), None
                elif kind == "records":
                    yield (int.from_bytes(key[1:9], "big"), int.from_bytes(key[9:], "big")), None
                else:
                    yield (key[1], int.from_bytes(key[2:], "big")), None
        elif kind in ("codes", "entry_keys", "cases"):
            yield from self._scan_index(kind)
        else:
            raise ValueError("unknown scan kind %r" % kind)

    def _scan_index(self, kind: str) -> Iterator[tuple[Any, Any]]:
        for key, value in self._iter(prefix={"codes": b"c", "entry_keys": b"r", "cases": b"k"}[kind]):
            try:
                payload = unseal(key, value)
                if kind == "codes":
                    yield key[1:], Location(*parse(key, payload, _ints(3)))
                elif kind == "entry_keys":
                    yield key[1:], EntryRef(*parse(key, payload, _ints(2)))
                else:
                    case, sep, code = key[1:].partition(b"\x00")
                    if not sep:
                        raise CorruptionError("malformed case key %r" % key)
                    yield case.decode("utf-8", "backslashreplace"), code
            except CorruptionError as exc:
                yield describe_key(key), exc
