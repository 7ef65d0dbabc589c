"""Errors raised by the ledger core, grouped by who is at fault.

* Input errors (``DecodeError``, ``CodeError``, ``GenesisError``, ``KeyFileError``,
  ``SignatureError``, ``EntryRejected``, ``ProofError``) describe bad data from
  outside: a peer, a client, a file.  They are ``ValueError`` subclasses and carry a
  machine-readable ``reason`` plus a message that names the offending field.
* Storage errors (``StoreError``, ``CorruptionError``) mean the node's own disk is
  broken or inconsistent; the node must stop rather than serve wrong data.

Every error has ``reason``: a short snake_case identifier that the HTTP API and CLI
map to their contracted error codes.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by ``ledger``."""

    reason = "ledger_error"

    def __init__(self, message: str, *, reason: str | None = None, field: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.field = field


class InputError(LedgerError, ValueError):
    """Data from outside this process is malformed or not acceptable."""

    reason = "bad_input"


class DecodeError(InputError):
    """Bytes are not the canonical encoding of the expected object."""

    reason = "malformed_encoding"


class SignatureError(InputError):
    """A signature does not verify for the claimed key and signing context."""

    reason = "bad_signature"


class KeyFileError(InputError):
    """A key file is malformed, of an unknown version, or has unsafe permissions."""

    reason = "bad_key_file"


class GenesisError(InputError):
    """A genesis / consortium file is invalid; the message names the field."""

    reason = "bad_genesis"


class CodeError(InputError):
    """A deposit code is malformed (bad characters, length or checksum)."""

    reason = "malformed_code"


class EntryRejected(InputError):
    """An entry is well-formed but may not be applied to the chain state.

    ``reason`` tells why (``unknown_member``, ``not_permitted``, ``already_deposited``,
    ``bad_signature``, ``unknown_category``, ``limit_exceeded``, ``stale_timestamp``...).
    """

    reason = "entry_rejected"


class ProofError(InputError):
    """A Merkle proof (or a receipt built on one) does not verify."""

    reason = "bad_proof"


class StoreError(LedgerError):
    """The store cannot do what was asked (closed, misuse, out-of-order append)."""

    reason = "store_error"


class CorruptionError(StoreError):
    """A stored record failed its checksum or disagrees with its indexes."""

    reason = "corruption"
