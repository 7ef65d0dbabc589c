"""Inputs (events) and outputs (actions) of ``Replica.step``.

The action list is a contract the node must honour, in list order:

1. ``Persist`` — write the records atomically and durably (fsync) *before*
   executing any later action of the same list.  Everything the replica signs as a
   vote (its pre-prepare, prepare, commit and prepared certificate for a sequence
   number, its view number, its view-change and new-view messages) is persisted
   this way before the ``Send``/``Broadcast`` that carries it.  A crash between
   the two is harmless: on restart the same bytes are re-sent, never a conflicting
   vote (tendermint #247).
2. ``Send`` / ``Broadcast`` — best-effort, unordered transport; may be dropped.
   ``Broadcast`` goes to every validator except the sender.
3. ``Deliver`` — append the committed block and its commit certificate to the
   store, strictly in height order (the replica emits them in height order, each
   exactly once per process lifetime, each extending the previous one), written
   before any later action.  The append need not be durable by then: the block is
   committed, so a quorum has persisted its prepared certificate, and a node whose
   store lost the append (a power cut) fetches the block again after restart.  The
   durability of the next ``Persist`` covers every earlier append; so a CHECKPOINT,
   which vouches for the blocks up to its sequence number (once stable, replicas
   discard the certificates below it), is always preceded by a ``Persist``, empty
   if need be.
4. ``Fetch`` — ask ``peer`` for committed blocks ``[from_height, to_height]``; answer
   later with a ``FetchResult`` event (possibly partial or empty).
5. ``Suspect`` / ``Dropped`` / ``Complained`` / ``ViewChangeStarted`` / ``ViewChanged`` /
   ``RequestDropped`` —
   informational (logs, metrics, peer scoring).
6. ``SetTimer`` — at most one, last: call ``step(TimerFired(), t)`` at or after
   ``deadline`` (``None`` cancels).  Equal to ``Replica.next_deadline()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ledger.block import Block, CommitCertificate
from ledger.model import EntryRecord


# ----------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Started:
    """First event after construction or restart: arms timers, re-sends what was persisted."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Raw bytes from the transport; ``sender`` is the transport-authenticated peer name."""

    sender: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A client's entry record to order (every validator may receive it)."""

    record: EntryRecord


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The deadline of the last ``SetTimer`` has passed."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Answer to a ``Fetch``: consecutive committed blocks with their certificates."""

    peer: str
    blocks: tuple[tuple[Block, CommitCertificate], ...]


Event = Union[Started, MessageReceived, ClientRequest, TimerFired, FetchResult]


# ----------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable key/value writes, applied atomically; a value of ``None`` deletes the key."""

    writes: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class Fetch:
    peer: str
    from_height: int
    to_height: int


@dataclass(frozen=True, slots=True)
class SetTimer:
    deadline: int | None


@dataclass(frozen=True, slots=True)
class Suspect:
    """``peer`` provably misbehaved (bad signature, invalid block, equivocation...)."""

    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message was ignored for a reason that is not proof of a fault (stale view, full buffer)."""

    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class RequestDropped:
    """A client request was not accepted for ordering (``pending_full``, ``rejected``...)."""

    request_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Complained:
    """Informational: nothing was delivered for ``waited_ms`` with work outstanding, so
    this replica broadcast a COMPLAINT about ``view`` (it stays in the view until f+1
    replicas complain)."""

    view: int
    waited_ms: int


@dataclass(frozen=True, slots=True)
class ViewChangeStarted:
    """This replica left ``view - 1`` and asks for ``view``; ``reason`` says why:
    ``progress_timeout`` (its own progress timer completed f+1 complaints; nothing
    delivered for ``waited_ms``), ``complaints`` (f+1 peers complained from at least
    its height), ``view_change_timeout`` (the last view change did not complete),
    ``joined`` (f+1 peers ask for a later view) or ``primary_fault`` (proof the
    primary is faulty)."""

    view: int
    reason: str
    waited_ms: int


@dataclass(frozen=True, slots=True)
class ViewChanged:
    view: int
    primary: str


Action = Union[Persist, Send, Broadcast, Deliver, Fetch, SetTimer, Suspect, Dropped, RequestDropped,
               Complained, ViewChangeStarted, ViewChanged]
