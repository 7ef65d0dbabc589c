"""Byzantine behaviours for simulated validators (at most f per scenario).

A Byzantine node runs the honest replica code (so it stays "plausible") and then
mutates what it sends.  Each behaviour only ever signs with its own key.

* ``Equivocator``  — as primary, sends different valid blocks for the same
  (view, seq) to different backups.
* ``Garbage``      — corrupts signatures, sends random bytes and truncated frames,
  and tampers with the blocks it serves to state transfer.
* ``Replayer``     — re-sends old messages: its own (valid signatures, old views)
  and other validators' (sender mismatch).
* ``Flooder``      — validly signed VIEW-CHANGEs, prepares and checkpoints for
  far-future views and sequence numbers.
* ``Silent``       — sends nothing at all (but keeps its state).
* ``Twin``         — a second replica with the same name and key, fed the same
  events and sending its own messages: equivocation by duplication.
"""

from __future__ import annotations

import random
from typing import Any

from ledger.block import Block, CommitCertificate

from consensus import io, ordering
from consensus.messages import Checkpoint, PrePrepare, Prepare, ViewChange, open_envelope, parse_body, seal
from consensus.replica import Replica


class Behaviour:
    name = "honest"

    def __init__(self, rng: random.Random):
        self.rng = rng

    def transform(self, cluster: Any, node: Any, event: Any, actions: list) -> list:
        return actions

    def fetch_answer(self, cluster: Any, blocks: tuple) -> tuple:
        return blocks


class Silent(Behaviour):
    name = "silent"

    def transform(self, cluster, node, event, actions):
        return [a for a in actions if not isinstance(a, (io.Send, io.Broadcast))]

    def fetch_answer(self, cluster, blocks):
        return ()


class Equivocator(Behaviour):
    name = "equivocate"

    def transform(self, cluster, node, event, actions):
        out = []
        r = node.replica
        for a in actions:
            if isinstance(a, io.Broadcast) and open_envelope(a.data, 1 << 30).kind == "pre_prepare":
                msg = parse_body(open_envelope(a.data, 1 << 30))
                block = Block.from_wire(msg.block_wire)
                parent = ordering.parent_tip(r, msg.seq) if msg.seq > r.last_delivered else None
                if parent is not None and block.header.view == msg.view and len(block.records) > 1:
                    alt, _ = cluster.app.build(parent, block.records[:-1], block.header.timestamp + 1,
                                               msg.view, node.name)
                    alt_data = seal(PrePrepare(msg.view, msg.seq, alt.wire()), node.name, r.auth)
                    for i, peer in enumerate(p for p in cluster.names if p != node.name):
                        out.append(io.Send(peer, a.data if i % 2 else alt_data))
                    continue
            out.append(a)
        return out


class Garbage(Behaviour):
    name = "garbage"

    def transform(self, cluster, node, event, actions):
        out = []
        for a in actions:
            if isinstance(a, (io.Send, io.Broadcast)):
                roll = self.rng.random()
                if roll < 0.3:
                    data = a.data[:-1] + bytes([a.data[-1] ^ 0x55])  # bad signature
                    a = io.Broadcast(data) if isinstance(a, io.Broadcast) else io.Send(a.to, data)
                elif roll < 0.4:
                    a = io.Broadcast(self.rng.randbytes(self.rng.randint(0, 300)))
                elif roll < 0.45:
                    a = io.Broadcast(a.data[: len(a.data) // 2])
            out.append(a)
        return out

    def fetch_answer(self, cluster, blocks):
        if not blocks:
            return blocks
        block, cert = blocks[0]
        if self.rng.random() < 0.5:
            bad = CommitCertificate(cert.header_hash, tuple((n, bytes(64)) for n, _ in cert.signatures))
            return ((block, bad),) + blocks[1:]
        return ((Block(block.header, block.records[:-1]), cert),) + blocks[1:] if block.records else blocks


class Replayer(Behaviour):
    name = "replay"

    def __init__(self, rng):
        super().__init__(rng)
        self.seen: list[bytes] = []
        self.own: list[bytes] = []

    def transform(self, cluster, node, event, actions):
        if isinstance(event, io.MessageReceived) and len(self.seen) < 500:
            self.seen.append(event.data)
        for a in actions:
            if isinstance(a, (io.Send, io.Broadcast)) and len(self.own) < 500:
                self.own.append(a.data)
        out = list(actions)
        if self.rng.random() < 0.3 and not isinstance(event, io.MessageReceived):
            pool = self.own if self.rng.random() < 0.6 else self.seen
            if pool:
                out.append(io.Broadcast(self.rng.choice(pool)))
        return out


class Flooder(Behaviour):
    name = "flood"

    last = -1000

    def transform(self, cluster, node, event, actions):
        out = list(actions)
        r = node.replica
        if cluster.now - self.last >= 20:  # a steady flood, not a chain reaction between flooders
            self.last = cluster.now
            far = r.view + self.rng.choice([2, 50, 10**6])
            msgs = [
                ViewChange(far, 0, bytes(32), (), ()),
                Prepare(far, self.rng.randint(1, 10**6), self.rng.randbytes(32)),
                Prepare(r.view, r.high_watermark() + self.rng.randint(1, 20), self.rng.randbytes(32)),
                Checkpoint(cluster.params.checkpoint_interval * self.rng.randint(1, 10**4), self.rng.randbytes(32)),
            ]
            for m in msgs:
                out.append(io.Broadcast(seal(m, node.name, r.auth)))
        return out


class Twin(Behaviour):
    name = "twin"

    def __init__(self, rng):
        super().__init__(rng)
        self.twin: Replica | None = None

    def transform(self, cluster, node, event, actions):
        r = node.replica
        if self.twin is None or isinstance(event, io.Started):
            self.twin = Replica(node.name, cluster._auth(node.name), cluster.app, r.tip, cluster.params)
            self.twin.step(io.Started(), node.last_now)
        try:
            extra = self.twin.step(event, node.last_now)
        except Exception:  # noqa: BLE001 - the twin is Byzantine; its own troubles do not matter
            self.twin = None
            extra = []
        return list(actions) + [a for a in extra if isinstance(a, (io.Send, io.Broadcast))]


BEHAVIOURS = {cls.name: cls for cls in (Silent, Equivocator, Garbage, Replayer, Flooder, Twin)}
