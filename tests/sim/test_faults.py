"""Targeted fault scenarios, one per protocol mechanism (each replays by seed)."""

import pytest

from tests.sim.cluster import Cluster, Violation, sim_params


def _load(c: Cluster, until: int, every: int = 100, size: int = 3) -> None:
    for t in range(c.now, until, every):
        c.at(t, lambda: c.submit(size))


def _finish(c: Cluster, settle: int = 60_000) -> None:
    c.settle(settle)
    c.check_views_stable(2000)
    assert c.caught_up()


# Reference: TOCS'02 §4.4 — a crashed primary is replaced; nothing committed is lost.
@pytest.mark.parametrize("n", [4, 7])
def test_primary_crash_triggers_view_change(n):
    c = Cluster(n, seed=11)
    _load(c, 3000)
    c.at(400, lambda: c.crash("v00"))
    c.run_until(3000)
    views = c.views()
    assert min(v for name, v in views.items() if name != "v00") >= 1
    c.restart("v00")
    _finish(c)


# Reference: TOCS'02 §4.5.2 — timeouts double per failed view and reset after progress.
def test_backoff_doubles_and_resets():
    c = Cluster(4, seed=12)
    _load(c, 2000)
    c.at(300, lambda: (c.crash("v00"), c.crash("v01")))  # view 1's primary is down too
    c.run_until(2500)
    r = c.nodes["v02"].replica
    assert r.failed_views >= 1
    c.restart("v00")
    c.restart("v01")
    _finish(c)
    assert all(n.replica.failed_views == 0 for n in c.honest_validators())


# The backoff resets only once the new view has delivered a checkpoint interval of
# blocks: a view that delivered just its first blocks keeps the doubled timeout (on an
# overloaded host the base timeout cascaded into the next view change).
def test_backoff_resets_after_a_checkpoint_interval_in_the_new_view():
    c = Cluster(4, seed=18)
    _load(c, 8000, every=50, size=3)
    c.at(300, lambda: c.crash("v00"))
    r = c.nodes["v02"].replica
    seen_early = False
    while c.now < 8000 and not (r.view >= 1 and not r.in_vc
                                and r.last_delivered >= r.view_base + c.params.checkpoint_interval):
        c.run_until(c.now + 5)
        if r.view >= 1 and not r.in_vc and r.view_base < r.last_delivered < r.view_base + c.params.checkpoint_interval:
            assert r.failed_views >= 1
            seen_early = True
    assert seen_early and r.failed_views == 0
    c.restart("v00")
    # v00 follows by state transfer; "caught up" compares heads at one instant, so
    # check it once the load is over, not while blocks are still being cut.
    c.run_until(8000)
    _finish(c)


# Reference: io contract + TOCS'02 §4.2 — a crash between Persist and Send loses nothing needed.
@pytest.mark.parametrize("victim", ["v00", "v02"])
def test_crash_in_the_middle_of_an_action_list(victim):
    for seed in range(5):
        c = Cluster(4, seed=seed)
        _load(c, 2500)
        for t in (300, 900, 1500):
            c.at(t, lambda: setattr(c.nodes[victim], "crash_mid_step", True))
            c.at(t + 200, lambda: c.restart(victim))
        c.run_until(2600)
        _finish(c)


# Reference: TOCS'02 §4.3 — checkpoints bound the log however long the chain runs.
def test_long_run_memory_is_bounded():
    c = Cluster(4, seed=13, params=sim_params(batch_max_entries=2))
    _load(c, 20_000, every=20, size=2)
    c.run_until(20_000)
    _finish(c)
    assert max(c.canon) > 400
    r = c.nodes["v01"].replica
    assert r.sizes()["slots"] <= 2 * c.params.watermark_window
    assert r.ckpt.stable_seq >= max(c.canon) - c.params.watermark_window
    assert len(c.nodes["v01"].persisted) <= 4 * c.params.watermark_window + 8


# Reference: TOCS'02 §5.3.2 — a replica cut off for long catches up by state transfer.
def test_partitioned_replica_catches_up_by_state_transfer():
    c = Cluster(4, seed=14)
    _load(c, 6000)
    c.at(200, lambda: c.partition(("v00", "v01", "v02"), ("v03",)))
    c.at(5000, c.heal)
    c.run_until(6000)
    _finish(c)


# A replica cut off (or starved) alone complains but stays in its view: it does not
# sit alone in a later view, out of the protocol, until the others get there (the
# 10-minute benchmark once had one there for 3.5 minutes before a failover).
def test_a_lone_stuck_replica_complains_but_keeps_its_view():
    c = Cluster(4, seed=17)
    _load(c, 8000)
    c.at(200, lambda: c.partition(("v00", "v01", "v02"), ("v03",)))
    c.run_until(5000)
    lone = c.nodes["v03"].replica
    assert lone.vc.complained_at is not None  # its progress timer did expire
    assert (lone.view, lone.in_vc) == (0, False)
    c.heal()
    c.run_until(8000)
    _finish(c)
    assert set(c.views().values()) == {0}
    assert lone.last_delivered == max(c.canon)


def test_minority_partition_halts_then_resumes():
    c = Cluster(4, seed=15)
    _load(c, 4000)
    c.at(300, lambda: c.partition(("v00", "v01"), ("v02", "v03")))
    c.run_until(2500)
    stalled = max(c.canon, default=0)
    c.run_until(3500)
    assert max(c.canon, default=0) <= stalled + 1  # no quorum on either side
    c.heal()
    _finish(c)


def test_asymmetric_cut_and_message_loss():
    c = Cluster(7, seed=16)
    _load(c, 5000)
    c.cut("v00", "v03")
    c.cut("v04", "v00")
    c.drop_p, c.dup_p, c.delay = 0.2, 0.2, (1, 120)
    c.at(4000, c.heal)
    c.run_until(5000)
    _finish(c)


# Observers replicate without voting (state transfer only).
def test_observer_follows_the_chain():
    c = Cluster(4, seed=17, observers=2)
    _load(c, 3000)
    c.run_until(3000)
    _finish(c)
    assert c.nodes["o00"].head == c.nodes["o01"].head == max(c.canon)


@pytest.mark.parametrize("kind", ["silent", "equivocate", "garbage", "replay", "flood", "twin"])
@pytest.mark.parametrize("n, byz", [(4, ("v00",)), (7, ("v00", "v02"))])
def test_byzantine_replicas(kind, n, byz):
    c = Cluster(n, seed=18)
    for name in byz:
        c.make_byzantine(name, kind)
    _load(c, 3000)
    c.run_until(3000)
    _finish(c)


def test_clock_drift_within_skew_is_harmless_and_timestamps_increase():
    c = Cluster(4, seed=19)
    for i, name in enumerate(c.names):
        c.nodes[name].clock = (i - 2) * 300
    _load(c, 3000)
    c.run_until(3000)
    _finish(c)
    stamps = [b.header.timestamp for b, _ in c.nodes["v01"].store]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_a_replica_with_a_broken_clock_is_outvoted():
    c = Cluster(4, seed=20)
    c.nodes["v03"].clock = 60_000  # far beyond max_clock_skew_ms: it refuses every block
    _load(c, 3000)
    c.run_until(3000)
    assert len(c.canon_ids) > 0
    c.nodes["v03"].clock = 0  # its proposals as primary would be refused too; fix it to finish
    # Its clock stepped back is held still (the node feeds a monotonic time), so its
    # timers resume only when the real time passes the 60 s it ran ahead.
    _finish(c, 120_000)


def test_a_restarted_validator_the_quorum_needs_catches_up_past_the_checkpoint_at_once():
    """v03 misses 120+ blocks, restarts, and v02 crashes: the next request needs v03.
    Its first poll asks for only 2 blocks (state_transfer.VALIDATOR_POLL_BLOCKS); since
    it holds no pre-prepare for its next height it is behind, not queued, and must
    chase at full size, not 2 blocks a retransmit tick (which took 17 s and three view
    changes before the chase existed)."""
    p = sim_params(checkpoint_interval=64, watermark_window=128, max_in_flight=8, retransmit_ms=500,
                   fetch_max_blocks=64, idle_poll_ms=2000, fetch_timeout_ms=1000, view_change_timeout_ms=2000,
                   max_view_change_timeout_ms=60_000, batch_max_entries=4)
    c = Cluster(4, seed=3, params=p)
    c.at(10, lambda: c.crash("v03"))
    t = 20
    while max(n.head for n in c.honest()) < 120:
        c.at(t, lambda: c.submit(4))
        c.run_until(t)
        t += 20
    c.run_until(t + 3000)
    behind = max(n.head for n in c.honest()) - c.nodes["v03"].head
    assert behind > p.checkpoint_interval  # past the last stable checkpoint: a real catch-up
    c.restart("v03")
    c.crash("v02")
    c.run_until(c.now + 100)
    start = c.now
    c.submit(1)
    while len(c.canon_ids) < len(c.submitted) and c.now < start + 60_000:
        c.run_until(c.now + 100)
    assert len(c.canon_ids) == len(c.submitted)
    assert c.now - start < p.view_change_timeout_ms
    assert set(c.views().values()) == {0}
    c.run_until(c.now + 3000)  # the chase ends at the first answer with nothing new
    xfer = c.nodes["v03"].replica.xfer
    assert xfer.outstanding is None and xfer.target <= c.nodes["v03"].head


def test_real_ed25519_with_faults():
    c = Cluster(4, seed=21, real_crypto=True)
    c.make_byzantine("v03", "garbage")
    _load(c, 2000)
    c.at(500, lambda: c.crash("v00"))
    c.at(1500, lambda: c.restart("v00"))
    c.run_until(2000)
    _finish(c)


# The checker itself: a replica that forgets its persisted votes (amnesia) is caught.
def test_amnesia_is_detected_as_equivocation():
    c = Cluster(4, seed=22)
    c.submit(3)
    while "pre_prepare/1" not in c.nodes["v00"].persisted:
        c.run_until(c.now + 1)
    assert not c.nodes["v00"].store
    c.crash("v00")
    c.nodes["v00"].persisted.clear()
    c.now += 5
    with pytest.raises(Violation, match="EQUIVOCATION"):
        c.restart("v00")
        c.submit(3)
        c.run_until(2000)


# A node appends a delivered block without a sync of its own (runtime/durable.py): the
# next Persist's sync makes it durable.  A power cut before that loses the append, and
# it must come back the same: the quorum's prepared certificates are durable.
@pytest.mark.parametrize("everyone", [False, True])
def test_a_power_cut_loses_only_unsynced_appends_and_they_are_delivered_again(everyone):
    c = Cluster(4, seed=23)
    _load(c, 3000)
    victim = None
    while c.now < 3000 and victim is None:
        c.run_until(c.now + 1)
        victim = next((n for n in c.honest_validators() if n.alive and len(n.store) > n.synced), None)
    assert victim is not None, "no node ever held an unsynced append"
    heads = {n.name: n.head for n in c.honest_validators()}
    for node in (c.honest_validators() if everyone else [victim]):
        c.power_cut(node.name)
    assert c.power_cuts_lost >= 1 and victim.head < heads[victim.name]
    c.run_until(c.now + 200)
    for node in c.honest_validators():
        c.restart(node.name)
    _finish(c)
    assert all(n.head >= heads[n.name] for n in c.honest_validators())


# Found in review: a CHECKPOINT sent over appends no sync had covered.  A, B and C
# deliver block 4 and send CHECKPOINT(4); D, which never delivered it, makes 4
# stable from their votes; then every node loses power and comes back after 2 s
# (past max_clock_skew_ms, as after a reboot).  Had the appends not been synced
# before the checkpoints left, block 4 would be gone from every store while the
# stable checkpoint discards every certificate for it: the chain halts for good.
@pytest.mark.parametrize("seed", range(3))
def test_a_stable_checkpoint_then_a_power_cut_of_every_node_loses_no_block(seed):
    from consensus.messages import open_envelope

    c = Cluster(4, seed=seed)
    abc = ("v00", "v01", "v02")
    send = c.send

    def filtered(src, dst, data):
        kind = open_envelope(data, 1 << 30).kind
        if (dst == "v03" and kind != "checkpoint") or src == "v03":
            return  # D sees only checkpoints: it never delivers
        if kind == "checkpoint" and src in abc and dst in abc:
            return  # A, B and C do not see each other's checkpoints
        send(src, dst, data)

    c.send = filtered
    fetch = c._fetch
    c._fetch = lambda nm, a: None
    for i in range(4):
        c.at(50 + 150 * i, lambda: c.submit(1))
    d = c.nodes["v03"]
    while c.now < 2000 and d.replica.ckpt.stable_seq < 4:
        c.run_until(c.now + 1)
    assert d.replica.ckpt.stable_seq == 4 and d.head == 0
    assert all(c.nodes[n].synced >= 4 for n in abc)  # the checkpoints went out over synced appends
    for name in c.names:
        c.power_cut(name)
    c.send, c._fetch = send, fetch
    c.run_until(c.now + 2000)
    for name in c.names:
        c.restart(name)
    c.at(c.now + 100, lambda: c.submit(2))
    _finish(c, 30_000)
    assert all(n.head >= 4 for n in c.honest_validators())


# Found in review: the new stable checkpoint and the deletion of the votes below it
# were two Persists; a power cut between their writes could keep the deletions and
# lose the checkpoint.  They are one Persist now (one atomic write).
def test_a_stable_checkpoint_and_the_deletions_below_it_are_one_persist():
    from consensus import io

    c = Cluster(4, seed=5)
    _load(c, 2000)
    seen = []
    execute = c._execute

    def spy(node, action):
        if type(action) is io.Persist and node.name == "v01":
            keys = dict(action.writes)
            if "stable" in keys:
                seen.append(keys)
            else:
                assert not any(value is None for value in keys.values()), "a deletion outside the checkpoint's Persist"
        execute(node, action)

    c._execute = spy
    c.run_until(2000)
    assert len(seen) >= 2
    assert all(any(v is None and k.startswith(("prepare/", "commit/", "prepared/")) for k, v in w.items()) for w in seen)
    _finish(c)
