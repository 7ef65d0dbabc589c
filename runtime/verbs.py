"""The user verbs of the CLI: ``deposit``, ``verify``, ``receipt``, ``verify-receipt``, ``status``, ``query``.

Each verb takes parsed arguments, talks to a node through the SDK
(``services.client``), prints for a person (or one JSON document with
``--json``) and returns the contracted exit code: 0 success or match, 1 verified
and NOT matching / NOT valid, 2 bad usage or bad input, 3 node unreachable or
failing.  Progress goes to standard error, and only when it is a terminal.

Bad input is caught where it is read: ``--node`` is checked by the argument parser
(``runtime.cli_args.node_url``), and a local file that cannot be read or written
is reported naming the file (exit 2), never as a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from ledger.codes import parse_code
from ledger.crypto import load_key_file
from ledger.errors import CodeError, InputError
from services.client import ApiError, ClientError, CommitTimeout, EvledgerClient, Unreachable, build_deposits, \
    codes_of, hash_file

EXIT_OK, EXIT_NOT_VALID, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
SUBMIT_CHUNK = 10_000  # items per progress step
PROGRESS_WINDOW_S = 2.0  # status: how long items may be pending without a new block before "degraded"


class Progress:
    """``label: done/total`` on standard error, redrawn in place, only on a terminal."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() and total > 0
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.1 or done >= self.total):
            self.last = now
            width = 30
            filled = width * done // self.total
            self.stream.write("\r%s [%s%s] %d/%d" % (self.label, "#" * filled, "." * (width - filled), done,
                                                      self.total))
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def err(message: str) -> None:
    print("evledger: " + message, file=sys.stderr)


def _hash(name: str) -> bytes:
    """SHA-256 of a local file; ``InputError`` naming the file if it cannot be read."""
    if not Path(name).is_file():
        raise InputError("%s is not a readable file" % name)
    try:
        return hash_file(name)
    except OSError as exc:  # permission denied, an I/O error, a file removed meanwhile
        raise InputError("cannot read %s: %s" % (name, exc.strerror or exc)) from None


def _load_key(path: str):
    """The member key file; ``InputError`` naming the file if it is missing, unsafe or unreadable."""
    try:
        return load_key_file(path)
    except OSError as exc:
        raise InputError("cannot read key file %s: %s" % (path, exc.strerror or exc)) from None


def _write(path: str, text: str) -> bool:
    """Write ``text`` to ``path``; if that fails, report it naming the file and return False."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:  # a missing folder, a directory, permission denied, a full disk
        err("cannot write %s: %s" % (path, exc.strerror or exc))
        return False
    return True


def api_exit(exc: ClientError) -> int:
    """Report a client error and return its exit code."""
    if isinstance(exc, Unreachable):
        err("node unreachable: %s" % exc)
        return EXIT_UNAVAILABLE
    if isinstance(exc, ApiError):
        err("%s: %s" % (exc.code, exc))
        # 2 only for a refusal of what was asked; busy (429), too slow (408) or an answer that is no
        # answer (a status below 400: bad_response, response_too_large) is the node's side: 3
        return EXIT_USAGE if 400 <= exc.status < 500 and exc.status not in (408, 429) else EXIT_UNAVAILABLE
    err(str(exc))
    return EXIT_UNAVAILABLE


# ----------------------------------------------------------------------- deposit

def _digests(files: Sequence[str], hexes: Sequence[str], digests_file: str | None) -> list[tuple[bytes, str]]:
    """``(digest, label)`` for every item, in order: files, then --digest, then --digests-file."""
    out: list[tuple[bytes, str]] = []
    progress = Progress("hashing", len(files))
    for i, name in enumerate(files):
        out.append((_hash(name), name))
        progress.update(i + 1)
    lines: Iterable[tuple[str, str]] = (("--digest", h) for h in hexes)
    if digests_file:
        try:
            text = Path(digests_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError("cannot read %s: %s" % (digests_file, exc)) from None
        lines = [*lines, *(("%s:%d" % (digests_file, n), line.strip()) for n, line in
                           enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#"))]
    for where, value in lines:
        value = value.lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise InputError("%s: %r is not a SHA-256 digest (64 hex characters)" % (where, value[:70]))
        out.append((bytes.fromhex(value), where))
    if not out:
        raise InputError("nothing to deposit: give files, --digest or --digests-file")
    return out


def deposit(args: Any) -> int:
    try:
        identity = _load_key(args.key)
        items = _digests(args.files, args.digest or [], args.digests_file)
    except InputError as exc:
        err(str(exc))
        return EXIT_USAGE
    client = EvledgerClient(args.node, key_file=identity, timeout=args.timeout)
    try:
        chain_id = client.chain_id
        records = build_deposits([d for d, _ in items], identity.name, identity.key, chain_id,
                                 category=args.category, case=args.case, batch_size=args.batch)
        results = _submit(client, records)
        if args.wait:
            _wait(client, records, chain_id, results, args.wait_timeout)
    except CommitTimeout as exc:
        err(str(exc))
        return EXIT_UNAVAILABLE
    except InputError as exc:
        err(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    _print_deposits(results, [label for _, label in items], args.json)
    return EXIT_OK


def _submit(client: EvledgerClient, records: list) -> list[dict]:
    total = sum(r.entry.body.item_count for r in records)
    progress = Progress("depositing", total)
    results: list[dict] = []
    chunk: list = []
    for record in records + [None]:
        if record is not None:
            chunk.append(record)
        size = sum(r.entry.body.item_count for r in chunk)
        if chunk and (record is None or size >= SUBMIT_CHUNK):
            results.extend(client.deposit(chunk))
            progress.update(len(results))
            chunk = []
    return results


def _wait(client: EvledgerClient, records: list, chain_id: str, results: list[dict], timeout: float) -> None:
    """Wait for one code per record (a record commits as a whole) and fill in every height."""
    firsts = [str(codes_of(r, chain_id)[0]) for r in records]
    heights = client.wait_committed(firsts, timeout=timeout)
    i = 0
    for record, first in zip(records, firsts):
        for _ in range(record.entry.body.item_count):
            results[i]["height"] = heights[first]
            results[i]["state"] = "committed"
            i += 1


def _print_deposits(results: list[dict], labels: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"digest": r["digest"], "code": r["code"], "height": r.get("height")} for r in results]))
        return
    for result, label in zip(results, labels):
        where = "height %d" % result["height"] if result.get("height") else result["state"]
        print("%s  %s  %s  (%s)" % (result["code"], result["digest"], label, where))


# ----------------------------------------------------------------------- verify

def verify(args: Any) -> int:
    try:
        code = parse_code(args.code)
    except CodeError as exc:
        report = {"verdict": "malformed_code", "code": args.code, "message": str(exc)}
        return _verdict(report, args.json, EXIT_USAGE)
    try:
        digest = _hash(args.file) if args.file else None
    except InputError as exc:
        err(str(exc))
        return EXIT_USAGE
    client = EvledgerClient(args.node, timeout=args.timeout)
    try:
        record = client.get_deposit(code)
    except ApiError as exc:
        if exc.code in ("not_found", "not_permitted", "malformed_code"):
            report = {"verdict": exc.code, "code": str(code), "message": str(exc)}
            return _verdict(report, args.json, EXIT_USAGE if exc.code == "malformed_code" else EXIT_NOT_VALID)
        return api_exit(exc)
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    report = {"code": str(code), "record": record}
    if record.get("state") != "committed":
        report.update(verdict="not_found", message="the deposit is not committed yet")
        return _verdict(report, args.json, EXIT_NOT_VALID)
    if digest is None:
        report.update(verdict="found")
        return _verdict(report, args.json, EXIT_OK)
    matches = digest.hex() == record["digest"]
    report.update(verdict="match" if matches else "mismatch", file=args.file, file_digest=digest.hex())
    return _verdict(report, args.json, EXIT_OK if matches else EXIT_NOT_VALID)


_VERDICT_TEXT = {
    "match": "MATCH: the file is exactly the evidence deposited under this code",
    "mismatch": "MISMATCH: the file is NOT what was deposited under this code",
    "found": "FOUND: the deposit is on chain (give a file to compare it)",
    "not_found": "NOT FOUND: no committed deposit has this code",
    "malformed_code": "MALFORMED CODE: this is not a valid deposit code (probably a typing error)",
    "not_permitted": "NOT PERMITTED: you may not see this record",
}


def _verdict(report: dict, as_json: bool, code: int) -> int:
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return code
    print(_VERDICT_TEXT[report["verdict"]])
    record = report.get("record")
    if record and record.get("state") == "committed":
        for label, key in (("code", "code"), ("deposited at", "deposited_at"), ("depositor", "depositor_name"),
                           ("category", "category"), ("case", "case"), ("block height", "height"),
                           ("digest on chain", "digest")):
            if record.get(key) is not None:
                print("  %-16s %s" % (label, record[key]))
    if report.get("file_digest"):
        print("  %-16s %s" % ("digest of file", report["file_digest"]))
    if report.get("message") and report["verdict"] not in ("match", "mismatch", "found"):
        print("  " + report["message"])
    return code


# ----------------------------------------------------------------------- status

def status(args: Any) -> int:
    """``evledger status --node URL``: height, view, primary, members and health (CONTRACT section 4)."""
    from ledger.genesis import parse_genesis

    client = EvledgerClient(args.node, timeout=args.timeout)
    try:
        doc = client.status()
        genesis = parse_genesis(client.request("GET", "/v1/genesis.json", signed=False))
        later = _later_status(client, doc)
    except InputError as exc:  # GenesisError: the node serves a genesis no node could start from
        err("the node's genesis is not valid: %s" % exc)
        return EXIT_UNAVAILABLE
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    doc = {**doc, "members": [{"name": m.name, "roles": list(m.roles), "api": m.node.api if m.node else None}
                              for m in genesis.members],
           "health": node_health(doc, genesis, later)}
    if args.json:
        print(json.dumps(doc))
        return EXIT_OK
    for key in ("node", "role", "chain_id", "height", "view", "primary", "last_block_hash", "pending", "version",
                "genesis_fingerprint"):
        if key in doc:
            print("%-20s %s" % (key, doc[key]))
    if "peers_connected" in doc:
        print("%-20s %s" % ("peers connected", ", ".join(doc["peers_connected"]) or "none"))
    print("members (%d):" % len(doc["members"]))
    for m in doc["members"]:
        print(("  %-18s %-28s %s" % (m["name"], ",".join(m["roles"]), m["api"] or "")).rstrip())
    reasons = doc["health"]["reasons"]
    print("%-20s %s" % ("health", doc["health"]["state"] + (": " + "; ".join(reasons) if reasons else "")))
    return EXIT_OK


def _later_status(client: EvledgerClient, first: dict) -> dict | None:
    """With items pending, poll until the height moves or ``PROGRESS_WINDOW_S`` pass; None if none pending."""
    if not first.get("pending"):
        return None
    deadline = time.monotonic() + PROGRESS_WINDOW_S
    while True:
        time.sleep(min(0.2, PROGRESS_WINDOW_S))
        later = client.status()
        if later.get("height") != first.get("height") or time.monotonic() >= deadline:
            return later


def node_health(doc: dict, genesis: Any, later: dict | None = None) -> dict:
    """``{"state": "healthy" | "degraded", "reasons": [...]}`` judged from a node's status (docs/cli.md).

    Degraded when the node is not connected to every other validator (saying which,
    and whether it still reaches a quorum), when its status names another chain or
    genesis than the one it serves, or when items stayed pending while no block was
    committed for ``PROGRESS_WINDOW_S`` (``later``: the status polled after the first).
    """
    reasons: list[str] = []
    validators = genesis.validator_set()
    names = [name for name, _ in validators.members]
    me, peers = doc.get("node"), doc.get("peers_connected")
    if doc.get("chain_id") != genesis.chain_id or doc.get("genesis_fingerprint") not in (None, genesis.fingerprint()):
        reasons.append("its status names another chain or genesis than the genesis it serves")
    if doc.get("primary") not in names:
        reasons.append("its primary %r is not a validator" % doc.get("primary"))
    if not isinstance(peers, list):
        reasons.append("it does not report its connected peers")
    else:
        missing = [n for n in names if n != me and n not in peers]
        reached = len(names) - len(missing)  # for a validator, itself included
        if doc.get("primary") in missing:
            reasons.append("not connected to the primary %s" % doc["primary"])
        others = [n for n in missing if n != doc.get("primary")]
        if others:
            reasons.append("not connected to %s %s" % ("validator" if len(others) == 1 else "validators",
                                                       ", ".join(others)))
        if me in names and reached < validators.quorum:
            reasons.append("reaches %d of %d validators (itself included), below the quorum of %d: it cannot "
                           "help commit" % (reached, len(names), validators.quorum))
        if me not in names and len(missing) == len(names):
            reasons.append("connected to no validator: it cannot follow the chain")
    if later is not None and later.get("pending") and later.get("height") == doc.get("height"):
        reasons.append("%d item(s) pending and no block committed in %g s" % (later["pending"], PROGRESS_WINDOW_S))
    return {"state": "degraded" if reasons else "healthy", "reasons": reasons}


# ----------------------------------------------------------------------- query

def query(args: Any) -> int:
    """``evledger query --case CASE``: a court's view of every deposit filed under a case."""
    try:
        identity = _load_key(args.key)
    except InputError as exc:
        err(str(exc))
        return EXIT_USAGE
    client = EvledgerClient(args.node, key_file=identity, timeout=args.timeout)
    try:
        doc = client.case_deposits(args.case)
    except ApiError as exc:
        if exc.code == "not_permitted":
            err("not_permitted: %s" % exc)
            return EXIT_NOT_VALID
        return api_exit(exc)
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    if args.report:
        code = _write_case_report(args, identity.name, doc)
        if code != EXIT_OK:
            return code
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
        return EXIT_OK
    deposits = doc.get("deposits", [])
    print("case %s: %d deposit%s (this retrieval is recorded on chain as access record %s)"
          % (args.case, len(deposits), "" if len(deposits) == 1 else "s", (doc.get("access_record") or "-")[:16]))
    for d in deposits:
        print("  %s  %s  %-16s block %-6s %s  %s" % (d["code"], d["deposited_at"], d["category"], d["height"],
                                                     d.get("depositor_name", d["depositor"]), d["digest"]))
        for key, value in sorted(d.get("private_meta", {}).items()):
            print("      %s: %s" % (key, value))
    return EXIT_OK


# ----------------------------------------------------------------------- receipts

def receipt(args: Any) -> int:
    """``evledger receipt CODE --node URL -o FILE``: fetch the self-contained receipt."""
    try:
        code = parse_code(args.code)
    except CodeError as exc:
        err("malformed_code: %s" % exc)
        return EXIT_USAGE
    client = EvledgerClient(args.node, timeout=args.timeout)
    try:
        doc = client.receipt(code)
    except ApiError as exc:
        if exc.code == "not_found":
            err("not_found: %s" % exc)
            return EXIT_NOT_VALID
        return api_exit(exc)
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    from ledger.receipt import receipt_json

    text = receipt_json(doc)
    text = text if text.endswith("\n") else text + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    if not _write(args.output, text):
        return EXIT_USAGE
    err("wrote %s (verify it offline: evledger verify-receipt %s --genesis genesis.json)" % (args.output,
                                                                                            args.output))
    return EXIT_OK


def verify_receipt(args: Any) -> int:
    """``evledger verify-receipt RECEIPT --genesis GENESIS [--file FILE]``: fully offline."""
    from ledger.errors import GenesisError
    from ledger.genesis import load_genesis
    from ledger.receipt import verify_receipt as check

    try:
        genesis = load_genesis(args.genesis)
    except (GenesisError, OSError) as exc:
        err("cannot use %s: %s" % (args.genesis, exc))
        return EXIT_USAGE
    try:
        data = Path(args.receipt).read_bytes()
    except OSError as exc:
        err("cannot read %s: %s" % (args.receipt, exc))
        return EXIT_USAGE
    try:
        digest = _hash(args.file) if args.file else None
    except InputError as exc:
        err(str(exc))
        return EXIT_USAGE
    verdict = check(data, genesis, digest)
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        print(_RECEIPT_TEXT[verdict.verdict] + ("" if verdict.ok or verdict.verdict == "mismatch"
                                                 else ": check %s failed" % verdict.failed_check))
        print("  " + verdict.message)
        for c in verdict.checks:
            print("  [%s] %-20s %s" % ({"passed": "ok", "failed": "FAIL", "skipped": "--"}[c.status], c.id,
                                        c.message))
    return EXIT_OK if verdict.ok else EXIT_NOT_VALID


_RECEIPT_TEXT = {
    "match": "MATCH: the receipt is valid and the file is exactly the deposited evidence",
    "valid": "VALID: the receipt proves this deposit on this consortium's chain",
    "mismatch": "MISMATCH: the receipt is valid but the file is NOT the deposited evidence",
    "invalid": "INVALID RECEIPT",
}


def _write_case_report(args: Any, caller: str, doc: dict) -> int:
    """Verify every item's receipt offline and write the printable case report."""
    from ledger.errors import GenesisError
    from ledger.genesis import load_genesis, parse_genesis

    from .case_report import render, verify_items

    client = EvledgerClient(args.node, timeout=args.timeout)
    try:
        if args.genesis:
            genesis = load_genesis(args.genesis)
            source = "from %s" % args.genesis
        else:
            genesis = parse_genesis(client.request("GET", "/v1/genesis.json", signed=False))
            source = "served by the node: compare it with the published fingerprint"
        items = verify_items(doc.get("deposits", []), client.receipt, genesis)
    except (GenesisError, OSError) as exc:
        err("cannot use the genesis: %s" % exc)
        return EXIT_USAGE
    except ClientError as exc:
        return api_exit(exc)
    finally:
        client.close()
    page = render(args.case, items, node=args.node, caller=caller, genesis=genesis, genesis_source=source,
                  access_record=doc.get("access_record"))
    if not _write(args.report, page):
        return EXIT_USAGE
    bad = sum(1 for i in items if i["status"] != "valid")
    err("wrote %s: %d item(s), %d with a valid receipt" % (args.report, len(items), len(items) - bad))
    return EXIT_OK

