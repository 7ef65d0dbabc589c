"""Values derived from signed bytes, remembered from a record's admission to its commit.

A validator meets each record several times: its own admission or a peer's
forward, the PRE-PREPARE's validation, the proposal or the commit's index.  What
depends only on the record's signed bytes is computed once and kept here:

* the store keys of a deposit's item codes (``derive_code_keys``: a SHA-256 and a
  base-32 encoding per item);
* that an entry's signature verified (one Ed25519 verification, about 55 µs);
* the decoded record itself (``ledger.model``'s record memo).

Each memo is bounded (oldest forgotten first), and :func:`forget` drops a
committed block's records from all three: once on chain, a record is never
checked again as new (a resubmission is a duplicate, found by the store), so
keeping its values would only hold memory until newer ones pushed them out.
"""

from __future__ import annotations

from typing import Iterable

from .codes import derive_code_keys
from .memo import BoundedMemo
from .model import Deposit, EntryRecord, forget_record, records_memo

# Sized for the seconds between admission and commit at the highest load (a
# primary's pool holds up to ~40,000 items), within the node's 200 MB.
CODES = BoundedMemo(60_000)  # (chain_id, signature, item count) -> code keys, weighted by items: ~5 MiB
VERIFIED = BoundedMemo(30_000)  # signature -> SHA-256 of (public key, chain id, context, signed body): ~6 MiB


def code_keys(chain_id: str, record: EntryRecord) -> tuple[bytes, ...]:
    """The store keys of a deposit record's item codes, in item order (derived once)."""
    sig = record.entry.signature
    count = len(record.items)
    memo_key = (chain_id, sig, count)
    hit = CODES.get(memo_key)
    if hit is not None:
        return hit
    keys = tuple(derive_code_keys(chain_id, sig, count))
    CODES.put(memo_key, keys, count + 3)  # + the entry's own overhead, in item units
    return keys


def verified(signature: bytes, fingerprint: bytes) -> bool:
    """Whether the signature was checked against exactly these signed bytes and key."""
    return VERIFIED.get(signature) == fingerprint


def remember_verified(signature: bytes, fingerprint: bytes) -> None:
    VERIFIED.put(signature, fingerprint)


def age() -> int:
    """Start a new epoch in every memo: what was remembered two epochs ago and never
    forgotten (never committed here) goes (``BoundedMemo.advance``).  How many went."""
    return VERIFIED.advance() + CODES.advance() + records_memo().advance()


def forget(chain_id: str, records: Iterable[EntryRecord]) -> None:
    """Drop committed records' derived values from every memo."""
    for record in records:
        sig = record.entry.signature
        VERIFIED.discard(sig)
        if isinstance(record.entry.body, Deposit):
            CODES.discard((chain_id, sig, len(record.items)))
        forget_record(record)
