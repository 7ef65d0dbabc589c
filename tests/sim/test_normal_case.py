"""Normal-case ordering in the simulator (TOCS'02 §4.2)."""

from tests.sim.cluster import Cluster


def _load(c: Cluster, batches: int = 10, size: int = 5, every: int = 50) -> None:
    for i in range(batches):
        c.at(c.now + i * every, lambda: c.submit(size))


# Reference: TOCS'02 §4.2 — pre-prepare/prepare/commit order requests in all replicas.
def test_four_replicas_commit_everything_in_order():
    c = Cluster(4, seed=1)
    _load(c)
    c.run_until(2000)
    c.settle(20_000)
    assert len(c.canon_ids) == 50
    assert {n.head for n in c.nodes.values()} == {max(c.canon)}


def test_seven_replicas_commit_everything():
    c = Cluster(7, seed=2)
    _load(c)
    c.run_until(2000)
    c.settle(20_000)
    assert len(c.canon_ids) == 50


def test_real_ed25519_signatures():
    c = Cluster(4, seed=3, real_crypto=True)
    _load(c, batches=4)
    c.run_until(1000)
    c.settle(20_000)
    assert len(c.canon_ids) == 20
