"""The ``evledger`` command line: parse, load, call, map errors to exit codes.

Exit codes (CONTRACT section 4): 0 success or match; 1 verified and found NOT
matching or NOT valid; 2 bad usage or bad input; 3 node unreachable or failing.
With ``--json`` standard output carries only the JSON document; messages and
progress go to standard error, and progress bars appear only on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from runtime.cli_args import EXIT_NOT_VALID, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from runtime.cli_args import Parser as _Parser
from runtime.cli_args import count as _count
from runtime.cli_args import node_url as _node_url
from runtime.cli_args import nonempty as _nonempty
from runtime.cli_args import positive as _positive
from runtime.cli_args import seconds as _seconds
from runtime.cli_bench import add_bench as _add_bench

__version__ = "0.1.0"
__all__ = ["EXIT_OK", "EXIT_NOT_VALID", "EXIT_USAGE", "EXIT_UNAVAILABLE", "build_parser", "main"]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="run a local consortium and show one-click evidence retrieval",
        description="Build a consortium (4 validators: court, notary, carrier, bank; 1 observer) in a "
        "temporary folder, start each node as its own process on 127.0.0.1, deposit sample evidence, "
        "verify it by deposit code on another node, print the node URLs and codes, and keep serving "
        "until Ctrl-C; then stop every process it started.",
    )
    demo.add_argument("--once", action="store_true", help="do the tour, stop everything and exit (0 if all went well)")
    demo.add_argument("--dir", help="build the consortium in this folder (kept afterwards) instead of a temporary one")
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from runtime import demo

    return demo.run(args.once, args.dir)


def _add_user_verbs(sub: argparse._SubParsersAction) -> None:
    """The verbs of CONTRACT section 4, and ``query``; every ``--node`` is checked as a URL here."""
    from runtime import verbs

    _add_deposit_verify(sub, verbs)
    _add_receipts(sub, verbs)
    _add_query_status(sub, verbs)


def _add_deposit_verify(sub: argparse._SubParsersAction, verbs) -> None:
    deposit = sub.add_parser(
        "deposit",
        help="deposit evidence digests (files are hashed locally and never leave this machine)",
        description="Hash FILEs locally with SHA-256 (and/or take --digest / --digests-file), sign the "
        "deposits with KEY and submit them in batches; print one deposit code per item.",
    )
    deposit.add_argument("files", nargs="*", metavar="FILE", help="files to deposit (only their SHA-256 is sent)")
    deposit.add_argument("--digest", action="append", metavar="HEX", help="a SHA-256 digest in hex (repeatable)")
    deposit.add_argument("--digests-file", metavar="F", help="a file with one hex SHA-256 digest a line")
    deposit.add_argument("--node", required=True, type=_node_url, metavar="URL",
                         help="node API base URL, e.g. http://127.0.0.1:7401")
    deposit.add_argument("--key", required=True, metavar="KEY", help="the depositor's key file (mode 0600)")
    deposit.add_argument("--category", default="general", help="evidence category (default: general)")
    deposit.add_argument("--case", help="case number the evidence belongs to")
    deposit.add_argument("--batch", type=_positive, default=1000, help="items per signed batch (default 1000)")
    deposit.add_argument("--wait", action="store_true", help="return once every deposit is committed, with heights")
    deposit.add_argument("--wait-timeout", type=_seconds, default=120.0, metavar="S",
                         help="give up waiting after S seconds (exit 3; default 120)")
    deposit.add_argument("--timeout", type=_seconds, default=30.0, metavar="S", help="per-request timeout")
    deposit.add_argument("--json", action="store_true", help='print [{"digest", "code", "height"}] only')
    deposit.set_defaults(func=verbs.deposit)

    verify = sub.add_parser(
        "verify",
        help="one-click retrieval: show the record of CODE and compare FILE with it",
        description="Fetch the chain's record for deposit CODE; with FILE, hash it locally and say whether "
        "it is exactly what was deposited. Exit 0 match (or found), 1 mismatch or not found, "
        "2 malformed code or unreadable FILE, 3 node unreachable.",
    )
    verify.add_argument("code", metavar="CODE", help="the deposit code, e.g. EV-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")
    verify.add_argument("file", nargs="?", metavar="FILE", help="the file to compare (hashed locally)")
    verify.add_argument("--node", required=True, type=_node_url, metavar="URL", help="node API base URL")
    verify.add_argument("--timeout", type=_seconds, default=30.0, metavar="S", help="per-request timeout")
    verify.add_argument("--json", action="store_true", help="print the verdict and record as JSON")
    verify.set_defaults(func=verbs.verify)


def _add_receipts(sub: argparse._SubParsersAction, verbs) -> None:
    receipt = sub.add_parser(
        "receipt",
        help="write the self-contained receipt of a deposit (verifiable offline)",
        description="Fetch the receipt of deposit CODE: one JSON document that proves, offline and with only "
        "genesis.json, the deposit's digest and fields, its block, and the validators' signatures "
        "(docs/receipt.md). Exit 1 if the code is not on chain, 2 if it is malformed.",
    )
    receipt.add_argument("code", metavar="CODE", help="the deposit code")
    receipt.add_argument("--node", required=True, type=_node_url, metavar="URL", help="node API base URL")
    receipt.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it ('-': stdout)")
    receipt.add_argument("--timeout", type=_seconds, default=30.0, metavar="S", help="request timeout")
    receipt.set_defaults(func=verbs.receipt)

    vr = sub.add_parser(
        "verify-receipt",
        help="verify a receipt fully offline (and compare a file with it)",
        description="Check RECEIPT against GENESIS with no network: format, chain, code derivation, the "
        "depositor's signature, every Merkle proof, the block header and a quorum of validator "
        "signatures; with --file, also that the file's SHA-256 is the deposited digest. Names the check "
        "that failed. Exit 0 valid/match, 1 invalid/mismatch, 2 unreadable input.",
    )
    vr.add_argument("receipt", metavar="RECEIPT", help="the receipt JSON file")
    vr.add_argument("--genesis", required=True, metavar="GENESIS", help="the consortium's genesis.json")
    vr.add_argument("--file", metavar="FILE", help="the evidence file to compare (hashed locally)")
    vr.add_argument("--json", action="store_true", help="print the verdict and every check as JSON")
    vr.set_defaults(func=verbs.verify_receipt)


def _add_query_status(sub: argparse._SubParsersAction, verbs) -> None:
    query = sub.add_parser(
        "query",
        help="a court's view: every deposit filed under a case, with full records",
        description="Signed query by a court, procuratorate, arbitration body or notary for every deposit filed "
        "under CASE, private metadata included. The retrieval itself is recorded on the chain as an "
        "access record. Exit 1 if the key's member may not query cases.",
    )
    query.add_argument("--case", required=True, type=_nonempty, help="the case number, e.g. (2026)京0491民初123号")
    query.add_argument("--node", required=True, type=_node_url, metavar="URL", help="node API base URL")
    query.add_argument("--key", required=True, metavar="KEY", help="the caller's key file (mode 0600)")
    query.add_argument("--timeout", type=_seconds, default=30.0, metavar="S", help="request timeout")
    query.add_argument("--json", action="store_true", help="print the answer as JSON")
    query.add_argument("--report", metavar="FILE", help="also write the printable case report (HTML): every item "
                       "with its receipt verified offline")
    query.add_argument("--genesis", metavar="GENESIS", help="verify receipts against this genesis.json (default: "
                       "the node's, whose fingerprint the report shows for comparison)")
    query.set_defaults(func=verbs.query)

    status = sub.add_parser(
        "status",
        help="height, view, primary, members and health of a node",
        description="Ask a node for its status (GET /v1/status) and the consortium's members (GET "
        "/v1/genesis.json): height, view, primary, pending items, connected peers, members with their roles, "
        "and health: 'degraded' with the reasons when the node misses a connection to a validator, cannot "
        "reach a quorum, or holds pending items while no block is committed for 2 s, else 'healthy' (rules in "
        "docs/cli.md). Exit 0 answered (healthy or not), 2 bad usage, 3 node unreachable or failing.",
    )
    status.add_argument("--node", required=True, type=_node_url, metavar="URL", help="node API base URL")
    status.add_argument("--timeout", type=_seconds, default=10.0, metavar="S", help="request timeout")
    status.add_argument("--json", action="store_true", help="print the status document as JSON")
    status.set_defaults(func=verbs.status)


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run one node in the foreground",
        description="Run the node configured by CONFIG (a node.toml, see config/node.example.toml) in the "
        "foreground until SIGTERM or Ctrl-C. A restart continues from the node's data folder. "
        "A bad configuration exits 2 with a message naming the key.",
    )
    run.add_argument("config", metavar="CONFIG", help="the node's node.toml")
    run.set_defaults(func=_run_node)


def _run_node(args: argparse.Namespace) -> int:
    from runtime.config import ConfigError, load_node

    try:
        load_node(args.config)  # refuse a bad configuration before the node runtime is even imported
    except ConfigError as exc:
        print("evledger run: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    import node

    return node.main(args.config)


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    cluster = sub.add_parser(
        "cluster",
        help="lay out, start and stop a whole consortium in one folder",
        description="A consortium on one machine: DIR/genesis.json, DIR/nodes/NAME/node.toml and node.key, "
        "DIR/clients/NAME.key (see docs/cli.md).",
    )
    verbs = cluster.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    verbs.required = True
    init = verbs.add_parser(
        "init",
        help="create a consortium: genesis, node configurations and keys",
        description="Write a new consortium into DIR: N validators (court-node, notary-node, carrier-node, "
        "bank-node, then validator-5, ...), M observers (observer-1, ...) and the institution clients "
        "(ecommerce, copyright, arbitration, court, notary, credit-bank, credit-carrier), with fresh keys "
        "(mode 0600). Node i listens on 127.0.0.1, peer port P+i and API port P+100+i.",
    )
    init.add_argument("dir", metavar="DIR", help="folder to create (must be empty or new)")
    init.add_argument("--validators", type=_positive, default=4, metavar="N", help="validators (default 4)")
    init.add_argument("--observers", type=_count, default=0, metavar="M", help="observers (default 0)")
    init.add_argument("--base-port", type=_positive, default=7300, metavar="P",
                      help="peer ports P+1.., API ports P+101.. (default 7300)")
    init.add_argument("--chain-id", metavar="ID", help="chain id (default: evledger- and 8 random hex digits)")
    init.add_argument("--force", action="store_true",
                      help="replace the consortium in a non-empty DIR (genesis.json, nodes/ with their data, "
                      "clients/); refused while its nodes run")
    init.add_argument("--json", action="store_true", help="print the result as JSON on standard output")
    init.set_defaults(func=_run_cluster_init)
    up = verbs.add_parser(
        "up",
        help="start every node of DIR in the background and wait until all answer",
        description="Start each node of DIR as its own process (log in DIR/nodes/NAME/node.log, pid in "
        "node.pid) and wait until every node answers GET /v1/status. If one fails, print its log's tail, "
        "stop what was started and exit 3.",
    )
    up.add_argument("dir", metavar="DIR", help="a folder made by 'evledger cluster init'")
    up.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                    help="seconds to wait for all nodes to answer (default 30)")
    up.add_argument("--json", action="store_true",
                    help='print {"nodes": [{"name", "role", "api", "pid", "config"}], '
                    '"clients": [{"name", "roles", "key"}]} on standard output')
    up.set_defaults(func=_run_cluster_up)
    down = verbs.add_parser(
        "down",
        help="stop the nodes of DIR",
        description="Send SIGTERM to every node of DIR recorded in a pid file (only if that process is "
        "really the node: its command line names the node's node.toml), wait, then SIGKILL stragglers. "
        "Exits 0 when nothing was running.",
    )
    down.add_argument("dir", metavar="DIR", help="a folder made by 'evledger cluster init'")
    down.add_argument("--timeout", type=_seconds, default=15.0, metavar="S",
                      help="seconds to wait after SIGTERM before SIGKILL (default 15)")
    down.add_argument("--json", action="store_true",
                      help='print {"stopped", "killed", "not_running", "survivors"} (lists of node names)')
    down.set_defaults(func=_run_cluster_down)


def _verb_group(sub: argparse._SubParsersAction, name: str, help_text: str, description: str):
    """A verb with actions of its own (``evledger NAME ACTION``)."""
    verbs = sub.add_parser(name, help=help_text, description=description).add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser)
    verbs.required = True
    return verbs


def _add_admin(sub: argparse._SubParsersAction) -> None:
    key_verbs = _verb_group(sub, "key", "generate or show a member's key file (setting up across machines)",
                            "Each institution generates its keys on its own machine and sends only the public "
                            "key to the coordinator who writes genesis.json (docs/operations.md).")
    gen = key_verbs.add_parser(
        "generate", help="write a fresh Ed25519 key file (mode 0600) and print its public key",
        description="Write a new secret key for member NAME to PATH with mode 0600 (refuses to overwrite an "
        "existing file) and print the member name, public key (hex) and fingerprint to put in genesis.json.",
    )
    gen.add_argument("--name", required=True, metavar="NAME", help="the member name (lowercase a-z, 0-9, -)")
    gen.add_argument("--out", required=True, metavar="PATH", help="where to write the key file")
    gen.add_argument("--json", action="store_true", help='print {"name", "public_key", "fingerprint", "path"}')
    gen.set_defaults(func=_run_key_generate)
    show = key_verbs.add_parser(
        "show", help="print the member name and public key of a key file",
        description="Load a key file (refused if group or others can read it) and print its member name, public "
        "key and fingerprint; the secret is never printed.",
    )
    show.add_argument("path", metavar="PATH", help="a key file")
    show.add_argument("--json", action="store_true", help='print {"name", "public_key", "fingerprint", "path"}')
    show.set_defaults(func=_run_key_show)
    genesis_verbs = _verb_group(sub, "genesis", "check a genesis file and print its fingerprint",
                                "Every institution checks the genesis it was sent and compares the fingerprint "
                                "out of band before starting its node.")
    check = genesis_verbs.add_parser(
        "check", help="validate genesis.json, print its fingerprint and members",
        description="Validate GENESIS with the rules every node applies (exit 2 naming the first bad field) and "
        "print the chain id, fingerprint, validator count, faults tolerated and members.",
    )
    check.add_argument("genesis", metavar="GENESIS", help="a genesis.json")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(func=_run_genesis_check)


def _admin_call(args: argparse.Namespace, call: Callable[[], int]) -> int:
    from ledger.errors import InputError

    try:
        return call()
    except (InputError, ValueError, OSError) as exc:  # bad name or file, unsafe key file, invalid genesis
        print("evledger %s %s: %s" % (args.verb, args.action, exc), file=sys.stderr)
        return EXIT_USAGE


def _print_key(args: argparse.Namespace, doc: dict) -> int:
    if args.json:
        _print_json(doc)
    else:
        print("member:      %s" % doc["name"])
        print("public key:  %s" % doc["public_key"])
        print("fingerprint: %s" % doc["fingerprint"])
        print("key file:    %s" % doc["path"])
    return EXIT_OK


def _run_key_generate(args: argparse.Namespace) -> int:
    from runtime import admin

    return _admin_call(args, lambda: _print_key(args, admin.generate_key(args.out, args.name)))


def _run_key_show(args: argparse.Namespace) -> int:
    from runtime import admin

    return _admin_call(args, lambda: _print_key(args, admin.show_key(args.path)))


def _run_genesis_check(args: argparse.Namespace) -> int:
    from runtime import admin

    def call() -> int:
        doc = admin.genesis_doc(args.genesis)
        if args.json:
            _print_json(doc)
            return EXIT_OK
        print("chain %s: valid" % doc["chain_id"])
        print("fingerprint: %s" % doc["fingerprint"])
        print("validators: %d (tolerates %d faulty, quorum %d)" % (doc["validators"], doc["faults_tolerated"],
                                                                   doc["quorum"]))
        for m in doc["members"]:
            where = "  peer %s  api %s" % (m["peer"], m["api"]) if m["peer"] else ""
            print("  %-16s %-28s %s%s" % (m["name"], ",".join(m["roles"]), m["public_key"][:16] + "...", where))
        return EXIT_OK

    return _admin_call(args, call)


def _print_json(doc: object) -> None:
    import json

    print(json.dumps(doc, indent=2, ensure_ascii=False))


def _cluster_call(args: argparse.Namespace, call: Callable[[], int]) -> int:
    from ledger.errors import InputError
    from runtime.cluster import StartError

    try:
        return call()
    except InputError as exc:  # ClusterError, ConfigError: nothing was started
        print("evledger cluster %s: %s" % (args.action, exc), file=sys.stderr)
        return EXIT_USAGE
    except StartError as exc:
        print("evledger cluster %s: %s" % (args.action, exc), file=sys.stderr)
        print("last lines of %s:" % exc.log, file=sys.stderr)
        for line in exc.tail or ["(empty)"]:
            print("    " + line, file=sys.stderr)
        print("every node this command started has been stopped", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _run_cluster_init(args: argparse.Namespace) -> int:
    from runtime import cluster

    def call() -> int:
        result = cluster.init(args.dir, validators=args.validators, observers=args.observers,
                              base_port=args.base_port, chain_id=args.chain_id, force=args.force)
        g = result.genesis
        nodes = [{"name": n.name, "role": n.role, "api": n.api, "peer": n.peer, "config": str(n.config)}
                 for n in result.nodes]
        if args.json:
            _print_json({"dir": str(result.dir), "chain_id": g.chain_id, "fingerprint": g.fingerprint(),
                         "genesis": str(result.dir / "genesis.json"), "nodes": nodes,
                         "clients": [c.to_doc() for c in result.clients]})
            return EXIT_OK
        print("created consortium %s in %s" % (g.chain_id, result.dir))
        print("genesis: %s (fingerprint %s)" % (result.dir / "genesis.json", g.fingerprint()))
        print("nodes:")
        for n in result.nodes:
            print("  %-14s %-9s peer %-15s api %-22s %s" % (n.name, n.role, n.peer, n.api, n.config))
        print("clients:")
        for c in result.clients:
            print("  %-14s %-24s %s" % (c.name, ",".join(c.roles), c.key))
        print("start it with: evledger cluster up %s" % result.dir)
        return EXIT_OK

    return _cluster_call(args, call)


def _run_cluster_up(args: argparse.Namespace) -> int:
    import os

    from runtime import cluster

    def call() -> int:
        command = [sys.executable, os.path.abspath(__file__), "run"]
        result = cluster.up(args.dir, command=command, timeout=args.timeout,
                            progress=lambda message: print(message, file=sys.stderr))
        if args.json:
            _print_json(result.to_doc())
            return EXIT_OK
        print("%d nodes of %s are up (chain %s):" % (len(result.nodes), result.dir, result.genesis.chain_id))
        for n in result.nodes:
            print("  %-14s %-9s %-22s pid %d" % (n.name, n.role, n.api, n.pid))
        print("client keys:")
        for c in result.clients:
            print("  %-14s %-24s %s" % (c.name, ",".join(c.roles), c.key))
        print("stop them with: evledger cluster down %s" % result.dir)
        return EXIT_OK

    return _cluster_call(args, call)


def _run_cluster_down(args: argparse.Namespace) -> int:
    from runtime import cluster

    def call() -> int:
        report = cluster.down(args.dir, timeout=args.timeout)
        if args.json:
            _print_json(report.to_doc())
        else:
            for name in report.stopped:
                print("%s: stopped" % name)
            for name in report.killed:
                print("%s: killed (did not stop within %g s of SIGTERM)" % (name, args.timeout))
            for name in report.survivors:
                print("%s: still running after SIGKILL" % name)
            if not (report.stopped or report.killed or report.survivors):
                print("no node of %s was running" % args.dir)
        return EXIT_UNAVAILABLE if report.survivors else EXIT_OK

    return _cluster_call(args, call)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evledger",
        description="evledger: a permissioned-blockchain evidence ledger. "
        "Institutions deposit SHA-256 evidence digests; anyone verifies them by deposit code.",
        epilog="Exit codes: 0 success/match, 1 not matching or not valid, 2 bad usage or input, "
        "3 node unreachable or failing.",
    )
    parser.add_argument("--version", action="version", version="evledger " + __version__)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    _add_demo(sub)
    _add_cluster(sub)
    _add_admin(sub)
    _add_run(sub)
    _add_user_verbs(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
