"""Deposit codes: the short, typeable handle a litigant uses to retrieve evidence.

Theory of operation
===================

A deposit code names one deposit on one chain.  It is printed as::

    EV-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX        (32 characters)

i.e. the prefix ``EV-`` and 25 symbols of Crockford base32
(``0123456789ABCDEFGHJKMNPQRSTVWXYZ``: no I, L, O, U) in five groups of five.
The first 23 symbols carry a 115-bit *value*; the last 2 are *check symbols*.

Derivation (``derive_code``)
    value = first 15 bytes of
    SHA-256(b"evledger/deposit-code/1\\x00" + utf8(chain_id) + b"\\x00" + signature
            + uint32_be(index))
    read big-endian and shifted right by 5 (120 -> 115 bits).  ``signature`` is the
    depositor's 64-byte Ed25519 signature over the deposit batch and ``index`` the
    item's position in that batch (0 for a single deposit).  Ed25519 is deterministic,
    so the depositor knows the code before commit, a resubmission yields the same
    code, and nobody without the depositor's key can predict it (115 bits).  The
    encoding of the hash input is injective: the signature and index have fixed lengths, so
    the total length fixes where ``chain_id`` ends; different chains give unrelated codes.

Checksum
    Read all 25 symbols (data then check, most significant first) as one base32
    number X.  The check value c (0 <= c < 1021, written as two symbols) is the
    unique one making X = value * 32**2 + c divisible by 1021:
    c = (-value * 1024) mod 1021.  A code is valid iff its check symbols equal that c
    (equivalently X mod 1021 == 0 *and* c < 1021, so every value has exactly one
    valid spelling).  See ``_check_value`` for the proof that every single-symbol
    substitution and every swap of two adjacent different symbols is detected.
    Other errors (two substitutions, ...) slip through with probability ~1/1021.
    Insertions and deletions change the symbol count and are reported as
    ``wrong_length``.

Parsing (``parse_code``) is forgiving about *presentation* and strict about *content*:

* the input must be a ``str`` (else ``TypeError``) of at most 64 characters;
  longer input is rejected before any other work;
* separators are ignored: ASCII space, tab, CR, LF, the Unicode spaces U+00A0,
  U+2000-U+200A, U+202F, U+205F, U+3000 (ideographic space), the invisible
  U+200B, U+2060, U+FEFF that copy-paste drags along, and the hyphens/dashes
  ``-``, U+2010-U+2015, U+2212, U+FF0D (what Chinese input methods produce);
* full-width digits and letters (U+FF10-FF19, U+FF21-FF3A, U+FF41-FF5A) are folded
  to ASCII, and letters are case-insensitive.  Folding uses explicit tables, never
  ``str.upper``/NFKC, so look-alikes such as dotless i, long s or the Kelvin sign
  are *bad characters*, not silently accepted letters;
* Crockford reading aids: I and L are read as 1, O as 0;
* after removing separators, 27 symbols starting with E, V are an ``EV`` prefix
  plus a code; otherwise there must be exactly 25 symbols;
* anything else is malformed.

Every failure is a ``CodeError`` (``reason == "malformed_code"``) with a
human-readable message and ``detail`` in: ``empty``, ``too_long``,
``bad_character`` (message names the character and its 1-based position in the
input; ``position`` attribute too), ``wrong_length`` (how many symbols were found,
25 expected), ``bad_checksum``.  A successful parse means *well-formed*; whether
the code exists on a chain is the store's question, never this module's.
Positions count Python code points (a JS mirror must count code points too, not
UTF-16 units).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from ledger.errors import CodeError

__all__ = [
    "ALPHABET",
    "CHECK_MODULUS",
    "CODE_SYMBOLS",
    "DATA_BITS",
    "MAX_INPUT_CHARS",
    "DepositCode",
    "codes_from_keys",
    "derive_code",
    "derive_code_keys",
    "derive_codes",
    "is_well_formed",
    "parse_code",
    "partial_check",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DATA_SYMBOLS = 23
CHECK_SYMBOLS = 2
CODE_SYMBOLS = DATA_SYMBOLS + CHECK_SYMBOLS  # 25
DATA_BITS = 5 * DATA_SYMBOLS  # 115
CHECK_MODULUS = 1021  # prime, > 32, < 32**2
PREFIX = "EV"
PRINTED_LENGTH = len(PREFIX) + 1 + CODE_SYMBOLS + CODE_SYMBOLS // 5 - 1  # 32
MAX_INPUT_CHARS = 64
SIGNATURE_BYTES = 64
DERIVATION_DOMAIN = b"evledger/deposit-code/1\x00"

_SYMBOL_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def _build_fold_table() -> dict[str, str]:
    """Map every accepted input character to its canonical symbol (explicit, ASCII-based)."""
    table: dict[str, str] = {}
    for ch in ALPHABET:
        table[ch] = ch
        table[ch.lower()] = ch  # digits map to themselves
    for aid, sym in (("I", "1"), ("L", "1"), ("O", "0")):
        table[aid] = sym
        table[aid.lower()] = sym
    for ch, sym in list(table.items()):  # full-width forms: U+FF01..FF5E = ASCII + 0xFEE0
        table[chr(ord(ch) + 0xFEE0)] = sym
    return table


_FOLD = _build_fold_table()
_SEPARATORS = frozenset(
    " \t\r\n\u00a0\u202f\u205f\u3000\u200b\u2060\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))  # en quad .. hair space
    + "-\u2212\uff0d"
    + "".join(chr(c) for c in range(0x2010, 0x2016))  # hyphen .. horizontal bar
)


def _check_value(value: int) -> int:
    """Return the check value c in [0, 1021) making value * 32**2 + c ≡ 0 (mod 1021).

    Why every single substitution and adjacent swap is caught: let X be the
    25-symbol number, so a valid code has X ≡ 0 (mod 1021) with 0 <= c < 1021.

    * Substituting the symbol at weight 32**k (k = 0 is the last symbol) by another
      changes X by d * 32**k with 0 < |d| < 32.  1021 is prime, it does not divide d
      (|d| < 1021) and does not divide 32**k = 2**(5k) (1021 is odd), so it does not
      divide the product: X' is not ≡ 0 and the checksum fails.
    * Swapping adjacent different symbols a (weight 32**(k+1)) and b (weight
      32**k) changes X by (b - a) * 32**(k+1) + (a - b) * 32**k
      = (b - a) * 31 * 32**k, with 0 < |b - a| < 32.  1021 is prime and divides
      none of (b - a), 31, 2**(5k), so again X' is not ≡ 0.

    (The extra rule c < 1021 only rejects more inputs, it never un-detects an error.)
    """
    return (-value * 32**CHECK_SYMBOLS) % CHECK_MODULUS


_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)  # 10-bit value -> two symbols
# derive_codes in bulk: symbol value (one per byte) -> symbol; spreading masks by batch size.
_SYMBOL_BYTES = bytes(ord(ALPHABET[b]) if b < 32 else 0 for b in range(256))
_PAD_BITS = 160 - 5 * CODE_SYMBOLS  # 35
# symbol (ASCII) -> the digit of its value in base 32 as ``int(text, 32)`` reads it
_TO_BASE32 = bytes.maketrans(ALPHABET.encode("ascii"), b"0123456789abcdefghijklmnopqrstuv")
_MASKS: dict[int, list[tuple[int, int, int]]] = {}


def _encode_symbols(number: int, count: int) -> str:
    # Two symbols per table lookup, most significant first (runs for every deposit item).
    out = [ALPHABET[(number >> (5 * (count - 1))) & 31]] if count & 1 else []
    out += [_PAIRS[(number >> shift) & 1023] for shift in range(5 * (count & ~1) - 10, -1, -10)]
    return "".join(out)


def _decode_symbols(symbols: str) -> int:
    number = 0
    for ch in symbols:
        number = (number << 5) | _SYMBOL_VALUE[ch]
    return number


@dataclass(frozen=True, slots=True, order=True, repr=False)
class DepositCode:
    """A well-formed deposit code; equality, ordering and hash follow ``value``."""

    value: int

    def __post_init__(self) -> None:
        if type(self.value) is not int:  # bool and int subclasses are misuse
            raise TypeError(f"DepositCode value must be an int, not {type(self.value).__name__}")
        if not 0 <= self.value < 1 << DATA_BITS:
            raise ValueError(f"DepositCode value must be in [0, 2**{DATA_BITS})")

    @property
    def compact(self) -> str:
        """The 25 canonical symbols: 23 data symbols then 2 check symbols."""
        data = _encode_symbols(self.value, DATA_SYMBOLS)
        return data + _encode_symbols(_check_value(self.value), CHECK_SYMBOLS)

    @property
    def key(self) -> bytes:
        """Store index key: the compact form as ASCII bytes."""
        return self.compact.encode("ascii")

    def __str__(self) -> str:
        c = self.compact
        return PREFIX + "-" + "-".join(c[i : i + 5] for i in range(0, CODE_SYMBOLS, 5))

    def __repr__(self) -> str:
        return f"DepositCode({str(self)!r})"

    @classmethod
    def from_compact(cls, compact: str) -> DepositCode:
        """Strictly parse the canonical 25-symbol form (as stored); no folding, no separators."""
        if not isinstance(compact, str):
            raise TypeError(f"compact code must be str, not {type(compact).__name__}")
        if len(compact) != CODE_SYMBOLS or any(ch not in _SYMBOL_VALUE for ch in compact):
            raise _error(
                "wrong_length" if len(compact) != CODE_SYMBOLS else "bad_character",
                f"not a canonical compact deposit code: expected exactly {CODE_SYMBOLS} "
                f"symbols of {ALPHABET}, got {len(compact)} characters",
            )
        return _from_symbols(compact)


def derive_code(chain_id: str, signature: bytes, index: int = 0) -> DepositCode:
    """Derive the code of item ``index`` of a deposit from its chain id and Ed25519 signature."""
    if type(index) is not int:
        raise TypeError(f"index must be int, not {type(index).__name__}")
    if not 0 <= index < 2**32:
        raise ValueError("index must be in [0, 2**32)")
    if not isinstance(chain_id, str):
        raise TypeError(f"chain_id must be str, not {type(chain_id).__name__}")
    if not isinstance(signature, (bytes, bytearray)):
        raise TypeError(f"signature must be bytes, not {type(signature).__name__}")
    if not chain_id:
        raise ValueError("chain_id must not be empty")
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        chain_bytes = chain_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("chain_id is not encodable as UTF-8 (lone surrogate?)") from None
    digest = hashlib.sha256(
        DERIVATION_DOMAIN + chain_bytes + b"\x00" + bytes(signature) + index.to_bytes(4, "big")
    ).digest()
    return DepositCode(int.from_bytes(digest[:15], "big") >> (120 - DATA_BITS))


def derive_codes(chain_id: str, signature: bytes, count: int) -> tuple[list[DepositCode], list[bytes]]:
    """``[derive_code(chain_id, signature, i) for i in range(count)]`` and their ``key`` s, fast.

    The same arguments are checked (once) and the same values computed; the
    per-item work skips re-validating what the derivation guarantees (the value
    is 115 bits by construction) and builds the compact key directly.
    """
    values = _derive_values(chain_id, signature, count)
    new, setattr_ = object.__new__, object.__setattr__
    codes = []
    for value in values:
        code = new(DepositCode)
        setattr_(code, "value", value)
        codes.append(code)
    return codes, _keys_of_values(values)


def derive_code_keys(chain_id: str, signature: bytes, count: int) -> list[bytes]:
    """The ``key`` s of :func:`derive_codes`, without building a ``DepositCode`` per item.

    What every validator needs for every item it indexes; the code objects are
    made on demand from the keys (:func:`codes_from_keys`).
    """
    return _keys_of_values(_derive_values(chain_id, signature, count))


def codes_from_keys(keys: Iterable[bytes]) -> list[DepositCode]:
    """The codes whose ``key`` s these are (keys as this module derives them: not checked)."""
    new, setattr_, base32 = object.__new__, object.__setattr__, _TO_BASE32
    codes = []
    for key in keys:
        code = new(DepositCode)
        setattr_(code, "value", int(key[:DATA_SYMBOLS].translate(base32), 32))
        codes.append(code)
    return codes


def _derive_values(chain_id: str, signature: bytes, count: int) -> list[int]:
    if count:
        derive_code(chain_id, signature, 0)  # every check derive_code makes, with its exact errors
    if type(count) is not int or not 0 <= count <= 2**32:
        raise ValueError("count must be an int in [0, 2**32]")
    base = hashlib.sha256(DERIVATION_DOMAIN + chain_id.encode("utf-8") + b"\x00" + bytes(signature))
    shift = 120 - DATA_BITS
    values = []
    for index in range(count):
        h = base.copy()
        h.update(index.to_bytes(4, "big"))
        values.append(int.from_bytes(h.digest()[:15], "big") >> shift)
    return values


def _keys_of_values(values: list[int]) -> list[bytes]:
    check_factor = 32**CHECK_SYMBOLS
    # The 125-bit symbol number, left-aligned in 160 bits (32 symbols, the last 7 zero).
    return _symbol_keys([(value * check_factor + (-value * check_factor) % CHECK_MODULUS) << _PAD_BITS
                         for value in values])


def _spread_masks(count: int) -> list[tuple[int, int, int]]:
    masks = _MASKS.get(count)
    if masks is None:
        masks = []
        for width, unit in ((80, 256), (40, 128), (20, 64), (10, 32), (5, 16)):
            lo = hi = 0
            for k in range(256 // unit):
                lo |= ((1 << width) - 1) << (k * unit)
                hi |= ((1 << width) - 1) << (k * unit + width)
            masks.append((int.from_bytes(lo.to_bytes(32, "big") * count, "big"),
                          int.from_bytes(hi.to_bytes(32, "big") * count, "big"), unit // 2 - width))
        if len(_MASKS) >= 8:
            _MASKS.clear()
        _MASKS[count] = masks
    return masks


def _symbol_keys(numbers: list[int]) -> list[bytes]:
    """The first 25 symbols of each 160-bit number, as ASCII, for a whole batch at once.

    Each number sits in a 256-bit slot of one big integer; five mask-and-shift
    rounds halve the groups each time (160 -> 2 x 80 bits, ..., 10 -> 2 x 5 bits)
    until every 5-bit symbol value has a byte of its own, and one ``translate``
    maps the bytes to the alphabet.  About 0.3 us an item, against 1.7 us for
    ``base64.b32encode`` (a Python loop in 3.11).
    """
    count = len(numbers)
    if not count:
        return []
    x = int.from_bytes(b"".join([n.to_bytes(32, "big") for n in numbers]), "big")
    for lo, hi, shift in _spread_masks(count):
        x = (x & lo) | ((x & hi) << shift)
    text = x.to_bytes(32 * count, "big").translate(_SYMBOL_BYTES)
    return [text[i:i + CODE_SYMBOLS] for i in range(0, 32 * count, 32)]


# --------------------------------------------------------------------------- parsing


def _error(detail: str, message: str, position: int | None = None) -> CodeError:
    err = CodeError(message, field="deposit_code")
    err.detail = detail
    err.position = position
    return err


def _describe(ch: str) -> str:
    """Name a character safely: never echo invisible, bidi or surrogate characters raw."""
    name = f"U+{ord(ch):04X}"
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r} ({name})"
    return name


def _check_input(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"deposit code must be str, not {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise _error(
            "too_long",
            f"input is {len(text)} characters long; a deposit code is at most "
            f"{MAX_INPUT_CHARS} characters even with spaces and hyphens",
        )
    return text


def _scan(text: str) -> str:
    """Fold ``text`` to canonical symbols, dropping separators; raise on a bad character."""
    symbols = []
    for position, ch in enumerate(text, start=1):
        if ch in _SEPARATORS:
            continue
        sym = _FOLD.get(ch)
        if sym is None:
            hint = " (the letter U is never used)" if ch in "Uu\uff35\uff55" else ""
            raise _error(
                "bad_character",
                f"character {_describe(ch)} at position {position} cannot appear in a "
                f"deposit code{hint}; codes use digits and letters (not U), spaces and hyphens",
                position,
            )
        symbols.append(sym)
    return "".join(symbols)


def _strip_prefix(symbols: str) -> str:
    if len(symbols) == CODE_SYMBOLS + len(PREFIX) and symbols.startswith(PREFIX):
        return symbols[len(PREFIX) :]
    return symbols


def _checksum_ok(symbols: str) -> bool:
    value = _decode_symbols(symbols[:DATA_SYMBOLS])
    return _decode_symbols(symbols[DATA_SYMBOLS:]) == _check_value(value)


def _from_symbols(symbols: str) -> DepositCode:
    if not _checksum_ok(symbols):
        raise _error("bad_checksum", "checksum does not match: probably a typing error")
    return DepositCode(_decode_symbols(symbols[:DATA_SYMBOLS]))


def _length_message(symbols: str) -> str:
    count = effective = len(symbols)
    found = f"found {count} symbols (letters and digits)"
    if count > len(PREFIX) and symbols.startswith(PREFIX):
        effective = count - len(PREFIX)  # the person most likely typed the prefix
        found = f"found {count} symbols ({effective} after the EV prefix)"
    msg = f"{found} but a deposit code has {CODE_SYMBOLS}, not counting the EV- prefix"
    if effective < CODE_SYMBOLS:
        return msg + ": a character is probably missing"
    if effective == CODE_SYMBOLS + len(PREFIX):
        return msg + ": there are two extra characters, or the prefix is mistyped"
    return msg + ": there is probably an extra character"


def parse_code(text: str) -> DepositCode:
    """Parse a deposit code as typed by a person; raise ``CodeError`` if malformed.

    Success means the code is well-formed, not that it exists on any chain.
    """
    symbols = _scan(_check_input(text))
    if not symbols:
        raise _error("empty", "no deposit code was entered")
    symbols = _strip_prefix(symbols)
    if len(symbols) != CODE_SYMBOLS:
        raise _error("wrong_length", _length_message(symbols))
    return _from_symbols(symbols)


def is_well_formed(text: str) -> bool:
    """True iff ``parse_code(text)`` would succeed (``TypeError`` for non-str)."""
    try:
        parse_code(text)
    except CodeError:
        return False
    return True


def partial_check(text: str) -> str:
    """Classify a code being typed: "incomplete", "bad_character", "too_long", "bad_checksum", "ok".

    Rules, in order (kept simple so the web page can mirror them):
    1. more than 64 characters -> "too_long";
    2. any character that is neither a symbol nor a separator -> "bad_character";
    3. n = number of symbols; candidate lengths are n, and n - 2 if the symbols
       start with "EV" (the prefix may have been typed);
    4. if a candidate is exactly 25 and parses (27 with "EV" is stripped, 25 is
       taken as is, exactly like ``parse_code``) -> "ok";
    5. else if some candidate is < 25 -> "incomplete" (keep typing);
    6. else if some candidate is exactly 25 -> "bad_checksum";
    7. else -> "too_long".
    "ok" is returned exactly when ``is_well_formed(text)`` is true.  A 25-symbol code
    starting with "EV" whose checksum fails shows "incomplete" (it may be the prefix
    plus 23 symbols); ``parse_code`` then gives the definitive ``bad_checksum``.
    """
    try:
        symbols = _scan(_check_input(text))
    except CodeError as err:
        return "too_long" if err.detail == "too_long" else "bad_character"
    body = _strip_prefix(symbols)
    if len(body) == CODE_SYMBOLS and _checksum_ok(body):
        return "ok"
    n = len(symbols)
    candidates = [n - len(PREFIX), n] if symbols.startswith(PREFIX) else [n]
    if any(c < CODE_SYMBOLS for c in candidates):
        return "incomplete"
    if CODE_SYMBOLS in candidates:
        return "bad_checksum"
    return "too_long"
