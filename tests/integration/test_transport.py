"""The peer transport over real sockets on 127.0.0.1.

Every wait is for a condition with a deadline (``eventually``, ``wait_connected``),
never a fixed sleep.  Ports are picked by binding port 0.  Hostile peers are played
by raw asyncio clients that speak as much of the protocol as each case needs.

The throughput figures of docs/transport.md come from ``test_throughput`` (marker
``bench``, not run by default)::

    PYTHONPATH=. python -m pytest tests/integration/test_transport.py -m bench -s -q
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger.crypto import SecretKey
from runtime.frames import HEADER, encode_frame, read_frame
from runtime.handshake import DIALER, Handshake
from runtime.transport import PeerTransport

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHAIN = "itest-chain"
HOST = "127.0.0.1"
VALIDATORS = ["bank", "carrier", "court", "notary"]
# Members without a listening node of their own: the test plays them.
EXTRA = ["observer", "watcher"]
KEYS = {name: SecretKey(bytes([i + 1]) * 32) for i, name in enumerate(VALIDATORS + EXTRA)}
MEMBERS = {name: key.public for name, key in KEYS.items()}
FAST = dict(handshake_timeout=2.0, heartbeat_interval=0.2, idle_timeout=2.0, backoff_base=0.02, backoff_max=0.5)


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def eventually(predicate, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        await asyncio.sleep(0.01)


class Inbox:
    """An on_message callback that records (peer, payload) pairs."""

    def __init__(self):
        self.items: list[tuple[str, bytes]] = []

    def __call__(self, peer: str, payload: bytes) -> None:
        self.items.append((peer, payload))

    def from_(self, peer: str) -> list[bytes]:
        return [p for who, p in self.items if who == peer]


class Cluster:
    """Transports for some of VALIDATORS, each dialling all the others, on fixed free ports."""

    def __init__(self, names, **options):
        self.names = list(names)
        self.ports = {n: free_port() for n in self.names}
        self.options = {**FAST, **options}
        self.nodes: dict[str, PeerTransport] = {}
        self.inbox: dict[str, Inbox] = {}

    def make(self, name: str, **options) -> PeerTransport:
        self.inbox[name] = Inbox()
        peers = {m: (HOST, self.ports[m]) for m in self.names if m != name}
        node = PeerTransport(name, KEYS[name], CHAIN, MEMBERS, (HOST, self.ports[name]), peers,
                             self.inbox[name], **{**self.options, **options})
        self.nodes[name] = node
        return node

    async def start(self) -> "Cluster":
        for name in self.names:
            await self.make(name).start()
        return self

    async def settled(self, timeout: float = 5.0) -> None:
        """Every pair connected over one shared socket, no connection being set up."""
        await asyncio.gather(*(n.wait_connected(timeout=timeout) for n in self.nodes.values()))

        def agreed() -> bool:
            for a in self.nodes.values():
                if a.connecting:
                    return False
                for b_name, link in a.links().items():
                    back = self.nodes[b_name].links().get(a.name)
                    if back is None or back.local != link.remote or back.remote != link.local:
                        return False
            return True

        await eventually(agreed, "both ends of every pair to agree on one connection", timeout)

    async def close(self) -> None:
        await asyncio.gather(*(n.close() for n in self.nodes.values()))


async def client_handshake(port: int, name: str = "observer", *, expect: str = "bank", sock=None):
    """Connect as member ``name`` (a test identity) and complete the handshake honestly."""
    if sock is None:
        reader, writer = await asyncio.open_connection(HOST, port)
    else:
        reader, writer = await asyncio.open_connection(sock=sock)
    hs = Handshake(DIALER, name, KEYS[name], CHAIN, MEMBERS, expected=expect)
    writer.write(encode_frame(hs.hello))
    auth = hs.receive_hello(await read_frame(reader, 1024))
    writer.write(encode_frame(auth))
    session = hs.receive_auth(await read_frame(reader, 1024))
    return reader, writer, session, hs, auth


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """True once the other end closed the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionError, OSError):
        pass
    return True


async def read_messages(reader, session, count_until, timeout: float = 10.0) -> list[bytes]:
    """Decrypt frames from ``reader`` until ``count_until(messages)`` is true."""
    opener, out = session.opener(), []
    async with asyncio.timeout(timeout):
        while not count_until(out):
            body = await read_frame(reader, 16 * 1024 * 1024)
            payload = opener.open(body)
            if payload:
                out.append(payload)
    return out


async def assert_still_serving(a: PeerTransport, b: PeerTransport, inbox_b: Inbox, tag: bytes) -> None:
    await a.wait_connected([b.name], timeout=5)
    a.send(b.name, tag)
    await eventually(lambda: tag in inbox_b.from_(a.name), "%s to reach %s" % (tag, b.name))


# ----------------------------------------------------------------------------- the mesh


def test_four_transports_form_a_full_mesh_and_deliver_in_order_both_ways():
    async def go():
        cluster = await Cluster(VALIDATORS).start()
        try:
            await cluster.settled()
            for name, node in cluster.nodes.items():
                assert node.connected() == set(VALIDATORS) - {name}
            n = 500
            for a in cluster.nodes.values():
                for b in VALIDATORS:
                    if b != a.name:
                        for i in range(n):
                            a.send(b, b"%s>%s:%06d" % (a.name.encode(), b.encode(), i))
            total = n * (len(VALIDATORS) - 1)
            await eventually(lambda: all(len(i.items) == total for i in cluster.inbox.values()), "all messages")
            for b, inbox in cluster.inbox.items():
                for a in VALIDATORS:
                    if a != b:
                        expected = [b"%s>%s:%06d" % (a.encode(), b.encode(), i) for i in range(n)]
                        assert inbox.from_(a) == expected, "%s -> %s out of order or incomplete" % (a, b)
            for node in cluster.nodes.values():
                node.broadcast(b"broadcast from " + node.name.encode())
            await eventually(lambda: all(len(i.items) == total + 3 for i in cluster.inbox.values()), "broadcasts")
            for b, inbox in cluster.inbox.items():
                assert {p for p in inbox.from_("bank") if p.startswith(b"broadcast")} == (
                    set() if b == "bank" else {b"broadcast from bank"})
            for node in cluster.nodes.values():
                s = node.stats
                assert s.frames_out == total + 3 and s.frames_in == total + 3
                assert not s.handshake_failures and not s.dropped
        finally:
            await cluster.close()

    run(go())


def test_simultaneous_dials_converge_on_the_connection_the_smaller_name_dialled_without_loss():
    async def go():
        cluster = Cluster(["bank", "carrier"])
        a, b = cluster.make("bank"), cluster.make("carrier")
        for i in range(200):  # queued before either side is connected
            a.send("carrier", b"a%03d" % i)
            b.send("bank", b"b%03d" % i)
        await asyncio.gather(a.start(), b.start())  # both listen before either dials
        try:
            await cluster.settled()
            link = a.links()["carrier"]
            if a.stats.disconnects["duplicate"] or b.stats.disconnects["duplicate"]:
                assert link.dialed, "the duplicate rule must keep bank's (the smaller name's) connection"
            assert a.connected() == {"carrier"} and b.connected() == {"bank"}
            await eventually(lambda: len(cluster.inbox["carrier"].items) == 200 == len(cluster.inbox["bank"].items),
                             "every queued frame, across the duplicate's retirement")
            assert sorted(cluster.inbox["carrier"].from_("bank")) == [b"a%03d" % i for i in range(200)]
            assert sorted(cluster.inbox["bank"].from_("carrier")) == [b"b%03d" % i for i in range(200)]
        finally:
            await cluster.close()

    run(go())


# ----------------------------------------------------------------------------- hostile peers


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


async def _attack(case: str, port: int):
    """Play one hostile peer against the node on ``port``; return the attacker's (reader, writer)."""
    if case == "replayed_auth":  # a full honest session first, recorded ...
        r, w, _, hs, auth = await client_handshake(port)
        w.close()
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(encode_frame(hs.hello) + encode_frame(auth))  # ... then replayed
        return reader, writer
    reader, writer = await asyncio.open_connection(HOST, port)
    if case in ("unknown_member", "unknown_key", "wrong_chain", "bad_signature"):
        name, key, chain = "observer", KEYS["observer"], CHAIN
        if case == "unknown_member":
            name, key = "mallory", SecretKey.generate()
        if case == "unknown_key":
            key = SecretKey.generate()  # a member's name, someone else's key
        if case == "wrong_chain":
            chain = "other-chain"
        hs = Handshake(DIALER, name, key, chain, MEMBERS, expected="bank")
        writer.write(encode_frame(hs.hello))
        if case == "bad_signature":
            auth = hs.receive_hello(await read_frame(reader, 1024))
            writer.write(encode_frame(_flip_last_bit(auth)))
    elif case == "timeout":
        pass  # connect and say nothing
    elif case == "frame_too_large":
        writer.write(b"\xff\xff\xff\xff")  # 4 GiB announced, no body follows
    elif case == "zero_length_frame":
        writer.write(b"\x00\x00\x00\x00")
    elif case == "malformed_hello":
        writer.write(encode_frame(random.Random(1).randbytes(200)))
    elif case == "garbage":
        writer.write(random.Random(2).randbytes(4096))
    else:
        raise AssertionError(case)
    return reader, writer


@pytest.mark.parametrize(
    "case",
    ["unknown_member", "unknown_key", "wrong_chain", "bad_signature", "replayed_auth", "timeout",
     "frame_too_large", "zero_length_frame", "malformed_hello", "garbage"],
)
def test_a_hostile_handshake_is_refused_for_its_reason_and_others_are_unaffected(case):
    async def go():
        deadline = 0.5 if case == "timeout" else FAST["handshake_timeout"]
        cluster = await Cluster(["bank", "carrier"], handshake_timeout=deadline).start()
        bank, carrier = cluster.nodes["bank"], cluster.nodes["carrier"]
        try:
            await cluster.settled()
            session = bank.links()["carrier"].session_id
            before = collections.Counter(bank.stats.handshake_failures)  # the cluster's own start-up
            reader, writer = await _attack(case, cluster.ports["bank"])
            assert await closed_by_peer(reader)
            writer.close()

            def refusals() -> dict:
                return dict(bank.stats.handshake_failures - before)

            if case == "garbage":
                await eventually(lambda: sum(refusals().values()) == 1, "one refusal")
            else:
                # exactly this reason, hence refused for it and not by the deadline
                await eventually(lambda: refusals() == {case: 1}, "reason %s alone to be counted" % case)
            # the connection to carrier is the very same session as before the attack
            assert bank.connected() == {"carrier"}
            assert bank.links()["carrier"].session_id == session == carrier.links()["bank"].session_id
            await assert_still_serving(bank, carrier, cluster.inbox["carrier"], b"after " + case.encode())
            await assert_still_serving(carrier, bank, cluster.inbox["bank"], b"back " + case.encode())
        finally:
            await cluster.close()

    run(go())


@pytest.mark.parametrize("case", ["bad_mac", "replayed_frame", "frame_too_large", "zero_length_frame", "truncated"])
def test_garbage_after_the_handshake_closes_only_that_connection(case):
    async def go():
        cluster = await Cluster(["bank", "carrier"], max_frame=64 * 1024).start()
        bank, carrier = cluster.nodes["bank"], cluster.nodes["carrier"]
        try:
            await cluster.settled()
            reader, writer, session, _, _ = await client_handshake(cluster.ports["bank"])
            await bank.wait_connected(["observer"], timeout=5)
            sealer = session.sealer()
            good = encode_frame(sealer.seal(b"genuine"))
            if case == "bad_mac":
                writer.write(good + encode_frame(os.urandom(40)))
            elif case == "replayed_frame":
                writer.write(good + good)
            elif case == "frame_too_large":
                writer.write(good + HEADER.pack(64 * 1024 + 1))
            elif case == "zero_length_frame":
                writer.write(good + b"\x00\x00\x00\x00")
            elif case == "truncated":
                writer.write(good + HEADER.pack(100) + b"partial")
                writer.write_eof()
            reason = "bad_mac" if case == "replayed_frame" else case
            await eventually(lambda: bank.stats.disconnects[reason] == 1, "disconnect for %s" % reason)
            assert await closed_by_peer(reader)
            assert cluster.inbox["bank"].from_("observer") == [b"genuine"]  # what came before is delivered
            assert bank.connected() == {"carrier"}
            await assert_still_serving(bank, carrier, cluster.inbox["carrier"], b"still here")
        finally:
            await cluster.close()

    run(go())


def test_a_dialler_refuses_a_node_that_is_not_the_one_it_dialled():
    async def go():
        court_port = free_port()
        court = PeerTransport("court", KEYS["court"], CHAIN, MEMBERS, (HOST, court_port), {}, Inbox(), **FAST)
        # bank believes carrier listens on court's port
        bank = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, None, {"carrier": (HOST, court_port)},
                             Inbox(), **FAST)
        async with court, bank:
            await eventually(lambda: bank.stats.handshake_failures["unexpected_peer"] >= 1, "unexpected_peer")
            assert bank.connected() == set() and court.connected() == set()

    run(go())


def test_too_many_pending_handshakes_are_refused():
    async def go():
        port = free_port()
        bank = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, (HOST, port), {}, Inbox(),
                             **{**FAST, "max_pending_handshakes": 2})
        async with bank:
            silent = [await asyncio.open_connection(HOST, port) for _ in range(2)]
            await eventually(lambda: bank.connecting == 2, "two handshakes pending")
            reader, _ = await asyncio.open_connection(HOST, port)
            assert await closed_by_peer(reader)
            assert bank.stats.handshake_failures["too_many_handshakes"] == 1
            for _, w in silent:
                w.close()
            # once those end, a member gets in again
            await eventually(lambda: bank.connecting == 0, "slots to free up")
            await client_handshake(port)
            await bank.wait_connected(["observer"], timeout=5)

    run(go())


def test_an_exception_in_on_message_is_counted_and_the_reader_goes_on():
    async def go():
        got = []

        def on_message(peer, payload):
            if payload == b"boom":
                raise RuntimeError("handler bug")
            got.append(payload)

        cluster = Cluster(["bank", "carrier"])
        a = cluster.make("bank")
        b = PeerTransport("carrier", KEYS["carrier"], CHAIN, MEMBERS, (HOST, cluster.ports["carrier"]),
                          {"bank": (HOST, cluster.ports["bank"])}, on_message, **FAST)
        cluster.nodes["carrier"] = b
        await a.start()
        await b.start()
        try:
            await cluster.settled()
            for payload in (b"one", b"boom", b"two"):
                a.send("carrier", payload)
            await eventually(lambda: got == [b"one", b"two"], "the frames around the failing one")
            assert b.stats.callback_errors == 1 and b.connected() == {"bank"}
        finally:
            await cluster.close()

    run(go())


def test_a_silent_peer_is_closed_after_the_idle_timeout():
    async def go():
        port = free_port()
        bank = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, (HOST, port), {}, Inbox(),
                             **{**FAST, "heartbeat_interval": 0.05, "idle_timeout": 0.3})
        async with bank:
            reader, writer, *_ = await client_handshake(port)  # and then never a heartbeat
            await bank.wait_connected(["observer"], timeout=5)
            await eventually(lambda: bank.stats.disconnects["idle_timeout"] == 1, "idle timeout")
            assert await closed_by_peer(reader)

    run(go())


# ----------------------------------------------------------------------------- membership


def test_a_member_not_in_peers_may_connect_inbound_and_receives_broadcasts():
    async def go():
        cluster = await Cluster(["bank", "carrier"]).start()
        bank = cluster.nodes["bank"]
        inbox = Inbox()
        observer = PeerTransport("observer", KEYS["observer"], CHAIN, MEMBERS, None,
                                 {"bank": (HOST, cluster.ports["bank"])}, inbox, **FAST)
        try:
            await cluster.settled()
            async with observer:
                await bank.wait_connected(["carrier", "observer"], timeout=5)
                bank.broadcast(b"block 1")
                await eventually(lambda: inbox.from_("bank") == [b"block 1"], "broadcast to the observer")
                observer.send("bank", b"hello from an observer")
                await eventually(lambda: cluster.inbox["bank"].from_("observer") == [b"hello from an observer"],
                                 "observer to bank")
            await eventually(lambda: "observer" not in bank.connected(), "observer gone")
            assert bank.send("observer", b"nobody dials it") is False
            assert bank.stats.dropped["not_connected"] == 1
            assert cluster.inbox["carrier"].from_("bank") == [b"block 1"]
        finally:
            await cluster.close()

    run(go())


def test_send_refuses_misuse():
    t = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, None, {"carrier": (HOST, 9)}, Inbox(),
                      max_frame=4096, queue_bytes=4096)
    for peer, payload, error in [
        ("mallory", b"x", ValueError),  # not a member
        ("bank", b"x", ValueError),  # itself
        ("carrier", b"", ValueError),
        ("carrier", b"x" * (4096 - 15), ValueError),  # frame would exceed max_frame
        ("carrier", bytearray(b"x"), TypeError),
    ]:
        with pytest.raises(error):
            t.send(peer, payload)
    assert t.send("carrier", b"x" * (4096 - 16)) is True  # queued until connected
    with pytest.raises(ValueError):
        PeerTransport("bank", KEYS["carrier"], CHAIN, MEMBERS, None, {}, Inbox())  # wrong key for the name
    with pytest.raises(ValueError):
        PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, None, {"mallory": (HOST, 9)}, Inbox())


# ----------------------------------------------------------------------------- restart


def test_a_restarted_node_on_the_same_port_is_reconnected_and_delivery_resumes():
    async def go():
        cluster = await Cluster(["bank", "carrier", "court"]).start()
        try:
            await cluster.settled()
            await cluster.nodes["court"].close()
            for name in ("bank", "carrier"):
                await eventually(lambda n=name: "court" not in cluster.nodes[n].connected(), "%s to notice" % name)
            # while court is down, bank's frames for it wait in the (bounded) queue
            cluster.nodes["bank"].send("court", b"sent while down")
            await eventually(lambda: cluster.nodes["bank"].stats.dial_failures >= 1, "a failed redial")
            await cluster.make("court").start()  # same name, key and port
            await cluster.settled()
            for name in ("bank", "carrier"):
                assert cluster.nodes[name].stats.reconnects >= 1
                cluster.nodes[name].send("court", b"welcome back from " + name.encode())
            cluster.nodes["court"].broadcast(b"court is back")
            await eventually(lambda: sorted(p for _, p in cluster.inbox["court"].items) == [
                b"sent while down", b"welcome back from bank", b"welcome back from carrier"], "delivery to court")
            for name in ("bank", "carrier"):
                await eventually(lambda n=name: b"court is back" in cluster.inbox[n].from_("court"), "from court")
        finally:
            await cluster.close()

    run(go())


# ----------------------------------------------------------------------------- bounded queues


def test_a_peer_that_does_not_read_loses_the_oldest_frames_and_memory_stays_bounded():
    async def go():
        port = free_port()
        limit, limit_bytes, size, n = 200, 256 * 1024, 1024, 16_000
        bank = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, (HOST, port), {}, Inbox(),
                             **{**FAST, "idle_timeout": 60, "write_timeout": 60, "max_frame": 64 * 1024,
                                "queue_limit": limit, "queue_bytes": limit_bytes})
        async with bank:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.connect((HOST, port))
            reader, writer, session, *_ = await client_handshake(port, sock=sock)
            await bank.wait_connected(["observer"], timeout=5)
            high = 0
            for i in range(n):  # the observer reads nothing meanwhile
                bank.send("observer", struct.pack(">Q", i) + bytes(size - 8))
                if i % 256 == 255:
                    await asyncio.sleep(0)  # let the writer run
                    frames, queued = bank.queue_depth("observer")
                    assert frames <= limit and queued <= limit_bytes
                    high = max(high, bank.links()["observer"].write_buffer)
            dropped = bank.stats.dropped["queue_full"]
            assert dropped > 0
            assert high <= 3 * 1024 * 1024, "socket buffer grew to %d bytes" % high
            # Now read everything: in order, the newest `limit` all there, nothing unaccounted.
            msgs = await read_messages(reader, session, lambda out: out and out[-1][:8] == struct.pack(">Q", n - 1))
            seqs = [struct.unpack(">Q", m[:8])[0] for m in msgs]
            assert seqs == sorted(set(seqs))
            assert set(range(n - limit, n)) <= set(seqs)
            assert len(seqs) + dropped == n
            writer.close()

    run(go(), timeout=30)


def test_a_peer_that_stops_reading_is_closed_after_the_write_timeout():
    async def go():
        port = free_port()
        bank = PeerTransport("bank", KEYS["bank"], CHAIN, MEMBERS, (HOST, port), {}, Inbox(),
                             **{**FAST, "idle_timeout": 60, "write_timeout": 0.3})
        async with bank:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.connect((HOST, port))
            reader, writer, *_ = await client_handshake(port, sock=sock)
            await bank.wait_connected(["observer"], timeout=5)
            for _ in range(160):  # 10 MiB, more than the socket buffers can take
                bank.send("observer", bytes(64 * 1024))
                await asyncio.sleep(0)
            await eventually(lambda: bank.stats.disconnects["write_timeout"] == 1, "write timeout")
            assert "observer" not in bank.connected()
            writer.close()

    run(go())


# ----------------------------------------------------------------------------- lifecycle


def test_close_cancels_every_task_and_closes_every_socket():
    async def go():
        before = set(asyncio.all_tasks())
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        cluster = await Cluster(["bank", "carrier", "court"]).start()
        await cluster.settled()
        # a half-open inbound handshake too
        _, stray = await asyncio.open_connection(HOST, cluster.ports["bank"])
        await eventually(lambda: cluster.nodes["bank"].connecting == 1, "the stray handshake")
        await cluster.close()
        await asyncio.sleep(0)
        assert set(asyncio.all_tasks()) == before
        for node in cluster.nodes.values():
            assert node.connected() == set() and node.links() == {}
        assert cluster.nodes["bank"].send("carrier", b"late") is False
        stray.close()
        await asyncio.sleep(0)
        if fds is not None:  # every listening and connected socket is closed
            assert len(os.listdir("/proc/self/fd")) == fds
        # the ports are free again
        for port in cluster.ports.values():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((HOST, port))

    run(go())


# ----------------------------------------------------------------------------- throughput (not asserted)

RECEIVER = textwrap.dedent(
    """
    import asyncio, sys
    from ledger.crypto import SecretKey
    from runtime.transport import PeerTransport
    seeds, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = {name: SecretKey(bytes.fromhex(seed)) for name, seed in (p.split("=") for p in seeds.split(","))}
    members = {name: key.public for name, key in keys.items()}

    async def main():
        done, count = asyncio.Event(), [0]
        def on(peer, payload):
            count[0] += 1
            if count[0] == n:
                done.set()
        async with PeerTransport("carrier", keys["carrier"], "bench", members, ("127.0.0.1", port), {}, on,
                                 queue_limit=100_000, queue_bytes=256 << 20) as t:
            print("ready", flush=True)
            await done.wait()
            t.send("bank", b"done")
            await asyncio.sleep(0.5)
    asyncio.run(main())
    """
)


async def _pump(a: PeerTransport, peer: str, payload: bytes, n: int, window: int) -> None:
    for i in range(n):
        a.send(peer, payload)
        if i % 256 == 255:
            while a.queue_depth(peer)[0] > window:
                await asyncio.sleep(0)


@pytest.mark.bench
@pytest.mark.parametrize("size", [64, 4096])
@pytest.mark.parametrize("mode", ["one-process", "two-processes"])
def test_throughput(size, mode):
    n = 300_000 if size == 64 else 100_000

    async def go():
        port = free_port()
        if mode == "one-process":
            done, count = asyncio.Event(), [0]

            def on(peer, payload):
                count[0] += 1
                if count[0] == n:
                    done.set()

            b = PeerTransport("carrier", KEYS["carrier"], "bench", MEMBERS, (HOST, port), {}, on,
                              queue_limit=100_000, queue_bytes=256 << 20)
            await b.start()
            proc = None
        else:
            seeds = ",".join("%s=%s" % (k, KEYS[k].seed_hex()) for k in ("bank", "carrier"))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", RECEIVER, seeds, str(port), str(n), cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
            assert (await proc.stdout.readline()).strip() == b"ready"
            done = asyncio.Event()
        inbox = []

        def on_a(peer, payload):
            inbox.append(payload)
            done.set()

        a = PeerTransport("bank", KEYS["bank"], "bench", MEMBERS, None, {"carrier": (HOST, port)}, on_a,
                          queue_limit=100_000, queue_bytes=256 << 20)
        await a.start()
        await a.wait_connected(timeout=5)
        started = time.perf_counter()
        await _pump(a, "carrier", os.urandom(size), n, window=4096)
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - started
        assert not a.stats.dropped
        await a.close()
        if proc is None:
            await b.close()
        else:
            await proc.wait()
        print("\n%-13s %5d-byte frames: %8.0f frames/s  %6.1f MB/s payload  (%d frames in %.2f s)"
              % (mode, size, n / elapsed, n * size / elapsed / 1e6, n, elapsed))

    run(go(), timeout=300)


@pytest.mark.bench
def test_round_trip_latency():
    """One message at a time, bank -> carrier -> bank, both in this process (one core)."""
    n = 5_000

    async def go():
        port = free_port()
        replies: asyncio.Queue = asyncio.Queue()
        b = PeerTransport("carrier", KEYS["carrier"], "bench", MEMBERS, (HOST, port), {},
                          lambda peer, payload: b.send(peer, payload))
        a = PeerTransport("bank", KEYS["bank"], "bench", MEMBERS, None, {"carrier": (HOST, port)},
                          lambda peer, payload: replies.put_nowait(payload))
        async with b, a:
            await a.wait_connected(timeout=5)
            samples = []
            for i in range(n):
                started = time.perf_counter()
                a.send("carrier", b"%08d" % i + bytes(56))
                assert (await replies.get())[:8] == b"%08d" % i
                samples.append(time.perf_counter() - started)
        samples.sort()
        print("\nround trip, 64-byte message, one at a time: p50 %.0f us  p99 %.0f us  (%d samples)"
              % (samples[n // 2] * 1e6, samples[n * 99 // 100] * 1e6, n))

    run(go(), timeout=120)
