"""Writer process for test_store_crash: append blocks to a LevelDB store until killed.

Usage: ``python crash_writer.py STORE_PATH SEED``.  Prints ``ready H`` once the
store is open at height H, then ``committed H`` after each append has returned
(i.e. after its synced batch is on disk).  Blocks vary from 1 to 400 entries and
records are signed in bulk beforehand, so a kill often lands inside a large
append; some blocks carry case events that link codes of earlier blocks.
Digests start from a random base so a restarted writer never re-deposits what an
earlier run did.
"""

from __future__ import annotations

import random
import sys

from ledger.leveldb_store import LevelDBStore
from tests.storehelpers import ChainBuilder

CASES = ["case-%d" % i for i in range(5)]


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    chain = ChainBuilder()
    chain.counter = rng.getrandbits(40) << 16
    store = LevelDBStore.open(path)
    codes: list[bytes] = []
    pool: list = []
    print("ready %d" % store.head().height, flush=True)
    while True:
        count = rng.choice([1, 5, 50, 200, 400])
        if len(pool) < count:  # sign in bulk so that most of the time is spent inside append()
            pool += [chain.deposit(items=rng.randint(1, 3), case=rng.choice(CASES + [None])) for _ in range(1000)]
        records, pool = pool[:count], pool[count:]
        if codes and rng.random() < 0.5:
            records.append(chain.case_event(rng.choice(CASES), rng.sample(codes, min(3, len(codes)))))
        built = chain.append(store, records)
        codes += [code for code, _ in built.index.codes[:10]]
        print("committed %d" % built.block.header.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
