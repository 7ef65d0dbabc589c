"""Length-prefixed frames and their per-session protection.

Theory of operation
-------------------
A TCP connection between two nodes carries a sequence of frames::

    length (4 bytes, unsigned, big-endian) || body (length bytes)

The length is judged the moment its four bytes are in hand, before any byte of the
body is read or buffered: zero is refused (``zero_length_frame``) and anything above
the receiver's limit is refused (``frame_too_large``).  A receiver therefore never
holds more than one frame limit plus one read chunk of a peer's bytes, whatever the
peer sends.  :class:`FrameDecoder` is the sans-I/O parser used for the data phase;
:func:`read_frame` is the small awaitable used during the handshake.

During the handshake a body is plain canonical msgpack (``runtime/handshake.py``),
with the small limit :data:`HANDSHAKE_MAX_FRAME`.  After it every body is sealed
with ChaCha20-Poly1305 under the key of its direction (:class:`Sealer` /
:class:`Opener`)::

    body = ChaCha20-Poly1305-Encrypt(key, nonce = 0x00000000 || counter (8 bytes BE), aad = empty, plaintext)

The counter starts at 0 in each direction and grows by one per frame, and is never
sent.  A frame that is altered, dropped, replayed, reordered or injected by anyone
on the path therefore fails to open (``bad_mac``) and the connection is closed:
within a session the receiver gets exactly the authenticated peer's frames, in the
order it sent them, or nothing more.  An empty plaintext is a heartbeat; it is never
delivered as a message.

Errors are peer faults: :class:`FrameError` (an ``InputError``) with a ``reason``.
"""

from __future__ import annotations

import asyncio
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ledger.errors import InputError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_LENGTH = 2**32 - 1  # what the 4-byte prefix can express
DEFAULT_MAX_FRAME = 8 * 1024 * 1024
HANDSHAKE_MAX_FRAME = 1024
TAG_SIZE = 16  # Poly1305 tag appended to every sealed body
KEY_SIZE = 32
_NONCE = struct.Struct(">IQ")  # 4 zero bytes || 64-bit counter = the 96-bit IETF nonce


class FrameError(InputError):
    """A peer sent bytes that are not an acceptable frame; its connection is closed.

    ``reason`` is one of ``zero_length_frame``, ``frame_too_large``, ``truncated``
    (end of stream inside a frame), ``closed`` (end of stream before a frame) and
    ``bad_mac`` (a sealed body failed to open).
    """

    reason = "bad_frame"


def encode_frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length prefix."""
    if not body:
        raise ValueError("a frame body must not be empty")
    if len(body) > MAX_LENGTH:
        raise ValueError("a frame body is at most %d bytes" % MAX_LENGTH)
    return HEADER.pack(len(body)) + body


def check_length(length: int, max_frame: int) -> None:
    """Raise :class:`FrameError` unless ``0 < length <= max_frame``."""
    if length == 0:
        raise FrameError("zero-length frame", reason="zero_length_frame")
    if length > max_frame:
        raise FrameError(
            "frame of %d bytes announced; the limit is %d" % (length, max_frame), reason="frame_too_large"
        )


class FrameDecoder:
    """Splits a byte stream into frame bodies (sans-I/O).

    ``feed(data)`` returns the bodies completed by ``data``, in order.  A bad length
    prefix stops decoding for good: the bodies before it are still returned and
    :attr:`error` holds the :class:`FrameError`; later calls raise it.  The body of
    a refused frame is never buffered.
    """

    __slots__ = ("max_frame", "error", "_buf", "_need")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        if not 1 <= max_frame <= MAX_LENGTH:
            raise ValueError("max_frame must be in [1, %d]" % MAX_LENGTH)
        self.max_frame = max_frame
        self.error: FrameError | None = None
        self._buf = bytearray()
        self._need = 0  # body length of the frame being read; 0 while reading a header

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (0 exactly at a frame boundary)."""
        return len(self._buf) + (HEADER_SIZE if self._need else 0)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            raise self.error
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos, end, need = 0, len(buf), self._need
        while True:
            if not need:
                if end - pos < HEADER_SIZE:
                    break
                (need,) = HEADER.unpack_from(buf, pos)
                try:
                    check_length(need, self.max_frame)
                except FrameError as exc:
                    self.error = exc
                    buf.clear()
                    self._need = 0
                    return out
                pos += HEADER_SIZE
            if end - pos < need:
                break
            out.append(bytes(buf[pos : pos + need]))
            pos += need
            need = 0
        self._need = need
        if pos:
            del buf[:pos]
        return out


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> bytes:
    """Read one frame body from ``reader``; the length is checked before the body is read."""
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header", reason="truncated") from None
        raise FrameError("stream ended", reason="closed") from None
    (length,) = HEADER.unpack(header)
    check_length(length, max_frame)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame body", reason="truncated") from None


class Sealer:
    """Seals the outgoing bodies of one direction of one session, numbering them."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes):
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError("a session key is 32 bytes")
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def seal(self, plaintext: bytes) -> bytes:
        # The counter cannot realistically reach 2**64; struct.pack raises if it did,
        # which closes the connection rather than reusing a nonce.
        nonce = _NONCE.pack(0, self._counter)
        self._counter += 1
        return self._aead.encrypt(nonce, plaintext, None)


class Opener:
    """Opens the incoming bodies of one direction of one session, strictly in order."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes):
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError("a session key is 32 bytes")
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def open(self, body: bytes) -> bytes:
        """The plaintext of the next body; raise ``FrameError("bad_mac")`` if it is not authentic."""
        nonce = _NONCE.pack(0, self._counter)
        try:
            plaintext = self._aead.decrypt(nonce, body, None)
        except InvalidTag:
            raise FrameError("frame %d failed authentication" % self._counter, reason="bad_mac") from None
        self._counter += 1
        return plaintext
