"""Errors of the consensus package, grouped by who is at fault.

* :class:`PeerFault` — a message from a peer is malformed, unauthenticated or
  breaks a protocol rule.  It never escapes ``Replica.step``: the replica drops the
  message and reports it with a ``Suspect`` or ``Dropped`` action.  ``reason`` is a
  short snake_case tag.
* :class:`Misuse` — the caller (the node) used the replica wrongly (bad parameters,
  an event of the wrong type, a time that goes backwards).  Raised: fix the caller.
* :class:`InvariantViolation` — something that cannot happen with at most ``f``
  faulty validators and a deterministic application happened (two conflicting
  certified blocks, a quorum-prepared block the application rejects).  Raised
  loudly: the node must stop rather than sign or serve anything further.
* :class:`AppRejected` — raised by the injected application when a proposed block
  is invalid; the replica turns it into a ``Suspect`` of the proposer.
"""

from __future__ import annotations


class ConsensusError(Exception):
    reason = "consensus_error"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PeerFault(ConsensusError, ValueError):
    """A peer sent something we must not act on (never raised out of ``step``)."""

    reason = "peer_fault"


class AppRejected(ConsensusError, ValueError):
    """The application refuses a block (bad roots, duplicates, unknown signer...)."""

    reason = "block_rejected"


class Misuse(ConsensusError, TypeError):
    """The local caller broke the replica's API contract."""

    reason = "misuse"


class InvariantViolation(ConsensusError, AssertionError):
    """More than f validators are faulty or the application is not deterministic."""

    reason = "invariant_violation"
