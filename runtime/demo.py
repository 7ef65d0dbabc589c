"""``evledger demo``: a whole consortium on this machine, and the tour a newcomer needs.

Builds a consortium (4 validators run by a court, a notary, a carrier and a bank,
plus an observer) in a temporary folder, starts every node as its own process on
127.0.0.1 with its own LevelDB, deposits sample evidence as two platforms would,
then does what a litigant does: one-click retrieval by deposit code with the file
in hand, on a different node than the one that took the deposit — a match, a
tampered copy that does not match, and a mistyped code reported as a typo.
It prints what a person needs (node URLs, the litigant's verification page, codes)
and keeps serving until Ctrl-C (``--once``: exits after the tour), then stops every
process it started.

The nodes run in sessions of their own (``runtime.processes``), so a signal sent to
the demo does not reach them: Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all
become one ``KeyboardInterrupt`` while the demo runs, and once clean-up has begun
further ones (a second Ctrl-C included) are ignored, so the nodes and the temporary
folder are always removed (:class:`_StopSignals`).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ledger.codes import parse_code
from ledger.crypto import load_key_file
from ledger.errors import CodeError
from ledger.genesis import load_genesis
from ledger.receipt import receipt_json, verify_receipt
from services.client import ClientError, EvledgerClient, build_deposits, hash_file

from . import cluster

SAMPLES = {
    "ecommerce": [
        ("order-20261128-0001.json", "ecommerce-order",
         '{"order": "20261128-0001", "buyer": "王某", "item": "笔记本电脑", "amount_cny": 6999}\n'),
        ("chat-record.txt", "chat-record", "买家: 收到的商品与描述不符。\n卖家: 请提供照片。\n"),
    ],
    "copyright": [
        ("artwork-sunrise.txt", "copyright", "《日出》 原创摄影作品 — 作者: 李某 — 2026-11-01\n"),
        ("license-agreement.txt", "e-contract", "著作权许可使用合同\n甲方: 李某\n乙方: 某网络科技有限公司\n"),
    ],
}


def _say(text: str = "") -> None:
    try:
        print(text, flush=True)
    except OSError:  # the terminal is gone (SIGHUP): clean-up must go on regardless
        pass


class _StopSignals:
    """While active, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` like Ctrl-C; the previous handlers
    come back on exit.  After :meth:`stopping` (clean-up has begun) or a first signal, further
    signals are ignored so that they cannot cut the clean-up short."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGINT too: a second Ctrl-C must not cut the clean-up short

    def __init__(self) -> None:
        self.received: int | None = None
        self.cleaning = False
        self._previous: dict[int, object] = {}

    def handle(self, signum: int, frame: object) -> None:
        if self.received is None and not self.cleaning:
            self.received = signum
            raise KeyboardInterrupt("signal %d" % signum)

    def stopping(self) -> None:
        self.cleaning = True

    def __enter__(self) -> "_StopSignals":
        for name in self.NAMES:
            signum = getattr(signal, name, None)
            if signum is None or signal.getsignal(signum) is signal.SIG_IGN:  # no SIGHUP here; or
                continue  # ignored on purpose (nohup, a background job's SIGINT): left so
            try:
                self._previous[signum] = signal.signal(signum, self.handle)
            except ValueError:  # not the main thread: signals cannot be handled here
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def _deposit_samples(consortium: cluster.Cluster, evidence: Path) -> list[dict]:
    keys = {c.name: c.key for c in consortium.clients}
    node = consortium.nodes[1].api  # the notary's node takes the deposits
    out = []
    for client_name, samples in SAMPLES.items():
        identity = load_key_file(keys[client_name])
        with EvledgerClient(node, key_file=identity) as client:
            for filename, category, text in samples:
                path = evidence / filename
                path.write_text(text, encoding="utf-8")
                digest = hash_file(path)
                records = build_deposits([digest], identity.name, identity.key, client.chain_id,
                                         category=category)
                result = client.deposit(records)[0]
                out.append({"file": path, "category": category, "client": client_name, **result})
        with EvledgerClient(node) as client:
            heights = client.wait_committed([r["code"] for r in out if r["client"] == client_name], timeout=30)
        for r in out:
            if r["code"] in heights:
                r["height"] = heights[r["code"]]
    return out


def _retrieve(consortium: cluster.Cluster, deposits: list[dict], evidence: Path) -> bool:
    """One-click retrieval on the observer (not the node that took the deposits)."""
    api = consortium.nodes[-1].api
    ok = True
    with EvledgerClient(api) as client:
        # The observer follows the chain a moment behind the validators: wait until
        # it holds every sample, as a litigant's node would long before anyone asks.
        client.wait_committed([d["code"] for d in deposits], timeout=30)
        first = deposits[0]
        answer = client.verify(first["code"], hash_file(first["file"]))
        _say("  %s + %s -> %s (block %s, deposited %s by %s)" % (
            first["code"], first["file"].name, "MATCH" if answer["match"] else "MISMATCH", answer["height"],
            answer["deposited_at"], answer["depositor"]))
        ok &= answer["match"] is True
        tampered = evidence / ("tampered-" + first["file"].name)
        tampered.write_bytes(first["file"].read_bytes().replace(b"6999", b"699"))
        answer = client.verify(first["code"], hash_file(tampered))
        _say("  %s + %s -> %s" % (first["code"], tampered.name, "MATCH" if answer["match"] else "MISMATCH"))
        ok &= answer["match"] is False
    typo = first["code"][:-1] + ("0" if first["code"][-1] != "0" else "1")
    try:
        parse_code(typo)
        _say("  %s -> unexpectedly accepted" % typo)
        ok = False
    except CodeError as exc:
        _say("  %s -> MALFORMED CODE: %s" % (typo, exc))
    return ok


def _receipt(consortium: cluster.Cluster, deposit: dict, root: Path) -> bool:
    with EvledgerClient(consortium.nodes[2].api) as client:
        doc = client.receipt(deposit["code"])
    path = root / "receipt.json"
    path.write_text(receipt_json(doc), encoding="utf-8")
    genesis = load_genesis(consortium.dir / "genesis.json")
    verdict = verify_receipt(path.read_bytes(), genesis, hash_file(deposit["file"]))
    passed = sum(1 for c in verdict.checks if c.status == "passed")
    quorum = next((c.message for c in verdict.checks if c.id == "certificate_quorum"), "")
    _say("  %s + %s -> %s (%d checks passed; %s)" % (path.name, deposit["file"].name, verdict.verdict.upper(),
                                                     passed, quorum))
    return verdict.verdict == "match"


def _tour(consortium: cluster.Cluster, root: Path, once: bool) -> int:
    """Deposit, retrieve, check a receipt offline, then serve until interrupted (``once``: return)."""
    for n in consortium.nodes:
        _say("  %-14s %-9s %s" % (n.name, n.role, n.api))
    page = consortium.nodes[-1].api + "/"
    _say("  verification page: %s  (open it in a browser; every node serves it at /)" % page)
    evidence = root / "evidence"
    evidence.mkdir(exist_ok=True)
    _say("\ndepositing sample evidence (hashed locally: files never leave this machine)")
    deposits = _deposit_samples(consortium, evidence)
    for d in deposits:
        _say("  %s  %-16s %-22s block %s" % (d["code"], d["category"], d["file"].name, d.get("height")))
    _say("\none-click evidence retrieval on %s (another institution's node)" % consortium.nodes[-1].name)
    ok = _retrieve(consortium, deposits, evidence)
    _say("\noffline receipt check (no network: only genesis.json and the receipt)")
    ok &= _receipt(consortium, deposits[0], root)
    _say("\ntry it yourself:\n  open the verification page %s, enter %s and choose %s\n"
         "  evledger verify %s %s --node %s\n  evledger verify-receipt %s --genesis %s --file %s\n"
         "  evledger status --node %s"
         % (page, deposits[0]["code"], deposits[0]["file"], deposits[0]["code"], deposits[0]["file"],
            consortium.nodes[0].api, root / "receipt.json", consortium.dir / "genesis.json", deposits[0]["file"],
            consortium.nodes[0].api))
    if not ok:
        _say("\nthe tour found a problem (see above)")
        return 1
    if once:
        return 0
    _say("\nserving until Ctrl-C ...")
    while True:
        time.sleep(3600)


def run(once: bool, folder: str | None = None) -> int:
    """The demo; 0 when the tour went as expected (or was stopped), 1 if not, 3 if the nodes failed."""
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="evledger-demo-"))
    keep = folder is not None
    started = False
    with _StopSignals() as signals:
        try:
            base = cluster.free_base_port()
            _say("evledger demo: a local consortium in %s" % root)
            consortium = cluster.init(root / "consortium", validators=4, observers=1, base_port=base, force=True)
            started = True  # from here on, clean-up stops whatever pid files say is running (an interrupted start too)
            consortium = cluster.up(consortium.dir, progress=lambda m: _say("  " + m), timeout=60)
            return _tour(consortium, root, once)
        except KeyboardInterrupt:
            signals.stopping()
            _say("\nstopping" + (" (%s)" % signal.Signals(signals.received).name if signals.received else ""))
            return 0
        except (cluster.StartError, cluster.ClusterError) as exc:
            print("evledger demo: %s" % exc, file=sys.stderr)
            return 3
        except ClientError as exc:
            print("evledger demo: a node did not answer as expected: %s" % exc, file=sys.stderr)
            return 3
        finally:
            signals.stopping()
            if started:
                report = cluster.down(root / "consortium")
                _say("stopped %d node processes" % (len(report.stopped) + len(report.killed)))
            if not keep:
                shutil.rmtree(root, ignore_errors=True)


__all__ = ["run"]
