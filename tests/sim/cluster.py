"""Deterministic virtual-time cluster simulator for ``consensus.Replica``.

One seeded ``random.Random`` drives everything (delays, drops, duplicates, fault
choices), virtual time advances only through the event queue, so a seed replays
exactly.  The network supports drop / duplicate / delay (hence reorder), symmetric
and asymmetric partitions, crash (optionally in the middle of an action list, which
loses every action after the cut — the Persist-before-Send contract is what makes
that safe), power cut (a crash that also loses the blocks delivered since the node's
last ``Persist``: the node does not sync an append on its own, ``runtime/durable.py``)
and restart from the persisted records and the stored chain, per-node clock offsets,
observers, and Byzantine behaviours (``byzantine.py``).

Invariants are checked on every delivered block and after every step
(``Violation`` is raised with the seed in the message):

* agreement — every honest replica delivers the same block at each height, across
  crashes and restarts (durable prefix: a node's store only ever grows by one
  block extending its head; a power cut may shorten it to its synced prefix, and
  what is delivered again must be the same blocks);
* certificates — every delivered block carries a certificate that verifies;
* validity — every committed entry was submitted by a client and appears once;
* view-change safety — a block committed-local anywhere (even if not yet delivered)
  is the only block ever committed-local or delivered at its height;
* no equivocation — an honest replica never signs two different votes for one
  (view, seq), even across crashes in the middle of an action list;
* bounded memory — ``Replica.sizes()`` stay under fixed bounds.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ledger.block import ValidatorSet
from ledger.crypto import SecretKey

from consensus import io
from consensus.auth import Ed25519Auth
from consensus.messages import open_envelope
from consensus.params import Params
from consensus.replica import Replica
from consensus.requests import request_id

from .app import CHAIN_ID, GENESIS_TIP, SimApp, make_record
from .fakeauth import FakeAuth


class Violation(AssertionError):
    pass


@dataclass
class Node:
    name: str
    validator: bool
    replica: Replica | None = None
    store: list = field(default_factory=list)        # [(block, cert)] — survives crashes
    synced: int = 0                                  # blocks of store that survive a power cut
    tip: Any = None                                  # app tip at some stored height (cache)
    persisted: dict = field(default_factory=dict)    # survives crashes
    alive: bool = True
    timer_gen: int = 0
    clock: int = 0                                   # offset added to virtual time
    last_now: int = 0
    byz: Any = None                                  # Byzantine behaviour or None
    crash_mid_step: bool = False

    @property
    def head(self) -> int:
        return len(self.store)


def sim_params(**over: int) -> Params:
    base = dict(batch_max_entries=8, batch_delay_ms=5, max_in_flight=4, checkpoint_interval=4,
                watermark_window=8, view_change_timeout_ms=400, max_view_change_timeout_ms=6400,
                retransmit_ms=150, max_clock_skew_ms=1000, fetch_timeout_ms=200, fetch_max_blocks=16,
                observer_poll_ms=100, idle_poll_ms=300, max_buffered_per_peer=64, max_pending_requests=10_000)
    base.update(over)
    return Params(**base)


class Cluster:
    def __init__(self, n: int = 4, seed: int = 0, observers: int = 0, real_crypto: bool = False,
                 params: Params | None = None, label: str = ""):
        self.seed, self.label = seed, label
        self.replay_hint = "python -m tests.sim.replay %d" % seed
        self.rng = random.Random(seed)
        self.params = params or sim_params()
        self.names = tuple("v%02d" % i for i in range(n))
        self.observer_names = tuple("o%02d" % i for i in range(observers))
        self.real_crypto = real_crypto
        if real_crypto:
            keys = {nm: SecretKey(bytes([i + 1]) * 32) for i, nm in enumerate(self.names)}
            self.validators = ValidatorSet(tuple((nm, k.public) for nm, k in keys.items()))
            self._auth = lambda nm: Ed25519Auth(CHAIN_ID, self.validators, keys.get(nm))
        else:
            self._auth = lambda nm: FakeAuth(nm if nm in self.names else None, self.names)
        self.checker = self._auth(None)
        vsh = self.validators.hash() if real_crypto else self.checker.validator_set_hash
        self.app = SimApp(vsh)
        self.nodes = {nm: Node(nm, nm in self.names) for nm in self.names + self.observer_names}
        self.now = 0
        self.queue: list = []
        self._counter = 0
        self.drop_p = 0.0
        self.dup_p = 0.0
        self.delay = (1, 10)
        self.blocked: set[tuple[str, str]] = set()
        self.canon: dict[int, bytes] = {}
        self.canon_ids: dict[bytes, int] = {}
        self.submitted: dict[bytes, Any] = {}
        self.client_seq = 0
        self.steps = 0
        self.messages = 0
        self.power_cuts_lost = 0  # blocks power cuts took from stores (they were delivered again)
        self.max_sizes: dict[str, int] = {}
        self.local: dict[int, bytes] = {}  # height -> digest committed-local somewhere
        self.votes: dict[tuple, bytes] = {}  # (name, kind, view, seq) -> hash of the signed body
        self.checks = True  # benchmarks turn the invariant checks off to time the protocol alone
        for nm in self.nodes:
            self._boot(nm)

    # ------------------------------------------------------------ plumbing

    def fail(self, text: str) -> None:
        raise Violation("%s [seed=%d %s] replay: %s" % (text, self.seed, self.label, self.replay_hint))

    def _push(self, t: int, kind: str, *payload: Any) -> None:
        self._counter += 1
        heapq.heappush(self.queue, (t, self._counter, kind, payload))

    def _boot(self, nm: str) -> None:
        node = self.nodes[nm]
        tip = node.tip or GENESIS_TIP
        for block, _ in node.store[tip.height:]:
            tip = self.app.validate(tip, block)
        node.tip = tip
        node.replica = Replica(nm, self._auth(nm), self.app, tip, self.params, dict(node.persisted))
        node.alive = True
        node.last_now = 0
        self._step(nm, io.Started())

    def honest(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.byz is None]

    def honest_validators(self) -> list[Node]:
        return [n for n in self.honest() if n.validator]

    # ------------------------------------------------------------ execution

    def _step(self, nm: str, event: Any) -> None:
        node = self.nodes[nm]
        if not node.alive:
            return
        # The node feeds a monotonic clock (a wall clock stepped back is held still).
        node.last_now = max(node.last_now, self.now + node.clock)
        actions = node.replica.step(event, node.last_now)
        self.steps += 1
        if node.byz is not None:
            actions = node.byz.transform(self, node, event, actions)
        cut = len(actions)
        if node.crash_mid_step:
            cut = self.rng.randint(0, len(actions))
        for action in actions[:cut]:
            self._execute(node, action)
        if node.crash_mid_step:
            node.crash_mid_step = False
            self.crash(nm)
            return
        if node.replica.tip.height == node.head:
            node.tip = node.replica.tip
        if self.checks:
            self._check_sizes(node)

    def _check_vote(self, node: Node, data: bytes) -> None:
        """NO-EQUIVOCATION: an honest replica, across crashes and restarts, never signs
        two different pre-prepares, prepares or commits for the same (view, seq)."""
        env = open_envelope(data, 1 << 30)
        if env.kind == "checkpoint":
            # DURABLE CHECKPOINT: a checkpoint vouches for the blocks up to its seq; they
            # must survive a power cut (once it is stable, nobody keeps their certificates).
            unpacker = msgpack.Unpacker()
            unpacker.feed(env.body)
            unpacker.read_array_header()
            seq = unpacker.unpack()
            if seq > node.synced:
                self.fail("UNDURABLE CHECKPOINT: %s vouched for %d with %d blocks synced" % (node.name, seq, node.synced))
            return
        if env.kind not in ("pre_prepare", "prepare", "commit"):
            return
        unpacker = msgpack.Unpacker()
        unpacker.feed(env.body)
        unpacker.read_array_header()
        key = (node.name, env.kind, unpacker.unpack(), unpacker.unpack())
        digest = hashlib.sha256(env.body).digest()
        if self.votes.setdefault(key, digest) != digest:
            self.fail("EQUIVOCATION by honest %s: two %s votes for view %d seq %d" % (node.name, *key[1:]))

    def _execute(self, node: Node, a: Any) -> None:
        t = type(a)
        if (t is io.Broadcast or t is io.Send) and node.byz is None and self.checks:
            self._check_vote(node, a.data)
        if t is io.Broadcast:
            for peer in self.names:
                if peer != node.name:
                    self.send(node.name, peer, a.data)
        elif t is io.Send:
            self.send(node.name, a.to, a.data)
        elif t is io.Persist:
            node.synced = len(node.store)  # the sync makes every earlier write durable
            for key, value in a.writes:
                if value is None:
                    node.persisted.pop(key, None)
                else:
                    node.persisted[key] = value
        elif t is io.Deliver:
            self._on_deliver(node, a)
        elif t is io.SetTimer:
            node.timer_gen += 1
            if a.deadline is not None:
                self._push(max(self.now, a.deadline - node.clock), "timer", node.name, node.timer_gen)
        elif t is io.Fetch:
            self._fetch(node.name, a)

    def send(self, src: str, dst: str, data: bytes) -> None:
        if (src, dst) in self.blocked or self.rng.random() < self.drop_p:
            return
        self.messages += 1
        copies = 2 if self.rng.random() < self.dup_p else 1
        for _ in range(copies):
            self._push(self.now + self.rng.randint(*self.delay), "msg", dst, src, data)

    def _fetch(self, nm: str, a: io.Fetch) -> None:
        if a.peer in self.nodes and (nm, a.peer) not in self.blocked:
            self._push(self.now + self.rng.randint(*self.delay), "fetch_ask", a.peer, nm, a)

    def _answer_fetch(self, nm: str, asker: str, a: io.Fetch) -> None:
        """The peer reads its store when the request arrives (a power cut before that loses the answer)."""
        peer = self.nodes[nm]
        if not peer.alive or (nm, asker) in self.blocked:
            return
        blocks = tuple(peer.store[a.from_height - 1: a.to_height])
        if peer.byz is not None:
            blocks = peer.byz.fetch_answer(self, blocks)
        self._push(self.now + self.rng.randint(*self.delay), "fetch", asker, nm, blocks)

    def _on_deliver(self, node: Node, a: io.Deliver) -> None:
        block, cert = a.block, a.certificate
        h = block.header
        if node.byz is None and self.checks:
            if h.height != node.head + 1:
                self.fail("%s delivered height %d on head %d" % (node.name, h.height, node.head))
            if node.store and h.prev_hash != node.store[-1][0].header.hash():
                self.fail("%s delivered a block that does not extend its chain" % node.name)
            digest = h.hash()
            if self.local.setdefault(h.height, digest) != digest:
                self.fail("SAFETY: delivered block %d differs from one committed-local" % h.height)
            if self.canon.setdefault(h.height, digest) != digest:
                self.fail("AGREEMENT violated at height %d by %s" % (h.height, node.name))
            try:
                self.checker.verify_certificate(h, cert)
            except Exception as exc:  # noqa: BLE001 - any failure is a violation
                self.fail("bad certificate at height %d: %s" % (h.height, exc))
            for rec in block.records:
                rid = request_id(rec)
                if rid not in self.submitted:
                    self.fail("VALIDITY: entry never submitted at height %d" % h.height)
                if self.canon_ids.setdefault(rid, h.height) != h.height:
                    self.fail("VALIDITY: entry committed twice")
        node.store.append((block, cert))

    def _check_sizes(self, node: Node) -> None:
        p = self.params
        bounds = {"slots": 2 * p.watermark_window + 2, "prepared_certs": p.watermark_window + 1,
                  "hashes": p.watermark_window + 2, "votes": 4 * (2 * p.watermark_window + 1),
                  "checkpoint_votes": len(self.names) * (p.watermark_window // p.checkpoint_interval + 2),
                  "view_change": 2 * len(self.names),
                  "buffered": len(self.names) * p.max_buffered_per_peer}
        if node.byz is None:
            # VIEW-CHANGE SAFETY: a block committed-local anywhere (delivered or not yet)
            # is the only block that can ever be committed at its height.
            for seq, slot in node.replica.slots.items():
                if slot.certificate is not None and self.local.setdefault(seq, slot.digest) != slot.digest:
                    self.fail("SAFETY: two blocks committed-local at height %d" % seq)
        for key, value in node.replica.sizes().items():
            if value > self.max_sizes.get(key, -1):
                self.max_sizes[key] = value
            if key in bounds and value > bounds[key] and node.byz is None:
                self.fail("MEMORY: %s of %s is %d > %d" % (key, node.name, value, bounds[key]))

    # ------------------------------------------------------------ driving

    def submit(self, count: int = 1) -> None:
        for _ in range(count):
            self.client_seq += 1
            rec = make_record("client-%d" % (self.client_seq % 3), self.client_seq, self.now)
            self.submitted[request_id(rec)] = rec
            for nm in self.names:
                self._push(self.now + self.rng.randint(*self.delay), "request", nm, rec)

    def resubmit_uncommitted(self) -> None:
        for rid, rec in self.submitted.items():
            if rid not in self.canon_ids:
                for nm in self.names:
                    self._push(self.now + self.rng.randint(*self.delay), "request", nm, rec)

    def run_until(self, t_end: int) -> None:
        while self.queue and self.queue[0][0] <= t_end:
            t, _, kind, payload = heapq.heappop(self.queue)
            self.now = max(self.now, t)
            if kind == "msg":
                dst, src, data = payload
                if (src, dst) not in self.blocked:
                    self._step(dst, io.MessageReceived(src, data))
            elif kind == "timer":
                nm, gen = payload
                if self.nodes[nm].alive and self.nodes[nm].timer_gen == gen:
                    self._step(nm, io.TimerFired())
            elif kind == "request":
                nm, rec = payload
                if self.nodes[nm].validator:
                    self._step(nm, io.ClientRequest(rec))
            elif kind == "fetch_ask":
                self._answer_fetch(*payload)
            elif kind == "fetch":
                nm, peer, blocks = payload
                self._step(nm, io.FetchResult(peer, blocks))
            elif kind == "call":
                payload[0]()
        self.now = max(self.now, t_end)

    def at(self, t: int, fn: Any) -> None:
        self._push(t, "call", fn)

    # ------------------------------------------------------------ faults

    def make_byzantine(self, nm: str, kind: str) -> None:
        from .byzantine import BEHAVIOURS

        self.nodes[nm].byz = BEHAVIOURS[kind](random.Random(self.rng.random()))

    def crash(self, nm: str) -> None:
        node = self.nodes[nm]
        node.alive = False
        node.replica = None
        node.timer_gen += 1

    def power_cut(self, nm: str) -> None:
        """A crash that loses the blocks delivered since the last sync (a Persist)."""
        node = self.nodes[nm]
        if node.alive:
            self.crash(nm)
        if len(node.store) > node.synced:
            self.power_cuts_lost += len(node.store) - node.synced
            del node.store[node.synced:]
            node.tip = None  # rebuilt from the store on restart

    def restart(self, nm: str) -> None:
        if not self.nodes[nm].alive:
            self._boot(nm)

    def partition(self, *groups: tuple[str, ...]) -> None:
        """Symmetric partition: no traffic between different groups."""
        self.blocked = set()
        where = {nm: i for i, g in enumerate(groups) for nm in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and where.get(a, -1) != where.get(b, -1):
                    self.blocked.add((a, b))

    def cut(self, src: str, dst: str) -> None:
        """Asymmetric: messages from ``src`` to ``dst`` are lost."""
        self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked = set()
        self.drop_p = self.dup_p = 0.0
        self.delay = (1, 10)

    # ------------------------------------------------------------ end-of-run checks

    def settle(self, deadline_ms: int, step_ms: int = 500) -> None:
        """Run until every submitted request is committed everywhere honest (liveness)."""
        end = self.now + deadline_ms
        while self.now < end:
            self.resubmit_uncommitted()
            self.run_until(self.now + step_ms)
            if self.caught_up():
                return
        self.fail("LIVENESS: not settled after %d ms: heads %s views %s, %d/%d committed" % (
            deadline_ms, {n.name: n.head for n in self.honest()},
            {n.name: (n.replica.view, n.replica.in_vc) for n in self.honest() if n.replica},
            len(self.canon_ids), len(self.submitted)))

    def caught_up(self) -> bool:
        if len(self.canon_ids) < len(self.submitted):
            return False
        heads = {n.head for n in self.honest()}
        return len(heads) == 1 and heads.pop() == max(self.canon, default=0)

    def views(self) -> dict[str, int]:
        return {n.name: n.replica.view for n in self.honest_validators() if n.replica}

    def check_views_stable(self, ms: int = 3000) -> None:
        before = self.views()
        self.run_until(self.now + ms)
        after = self.views()
        if max(after.values(), default=0) > max(before.values(), default=0):
            self.fail("LIVENESS: views still changing after heal: %s -> %s" % (before, after))
