"""Unit tests for ledger.codes: derivation, printed form, parsing, error details."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from ledger.codes import (
    ALPHABET,
    CHECK_MODULUS,
    DATA_BITS,
    MAX_INPUT_CHARS,
    DepositCode,
    derive_code,
    is_well_formed,
    parse_code,
    partial_check,
)
from ledger.errors import CodeError, InputError

SIG = bytes(range(64))
CHAIN = "evledger-test"
# Pinned vector (regression guard, and a fixture for the future JS mirror).
VECTOR_PRINTED = "EV-WNBP2-FZTMH-2N1TE-T79FT-Q1XWA"
FULLWIDTH_OFFSET = 0xFEE0


def as_number(compact: str) -> int:
    """Independent base32 reading of a 25-symbol code (spec: X)."""
    x = 0
    for ch in compact:
        x = x * 32 + ALPHABET.index(ch)
    return x


def spec_value(chain_id: str, signature: bytes, index: int = 0) -> int:
    """Independent re-implementation of the derivation in the brief."""
    h = hashlib.sha256(
        b"evledger/deposit-code/1\x00" + chain_id.encode() + b"\x00" + signature + index.to_bytes(4, "big")
    )
    return int.from_bytes(h.digest()[:15], "big") >> 5


def random_codes(n: int, seed: int) -> list[DepositCode]:
    rng = random.Random(seed)
    return [derive_code(f"chain-{i % 3}", rng.randbytes(64)) for i in range(n)]


def fullwidth(text: str) -> str:
    return "".join(
        chr(ord(c) + FULLWIDTH_OFFSET) if c.isascii() and c.isalnum() else c for c in text
    )


def error_of(text) -> CodeError:
    with pytest.raises(CodeError) as info:
        parse_code(text)
    err = info.value
    assert err.reason == "malformed_code"
    assert isinstance(err, InputError) and isinstance(err, ValueError)
    assert str(err)  # always a human-readable message
    return err


# --------------------------------------------------------------------------- derivation


def test_pinned_vector():
    code = derive_code(CHAIN, SIG)
    assert str(code) == VECTOR_PRINTED
    assert code.value == spec_value(CHAIN, SIG)


def test_item_index_gives_distinct_codes():
    codes = {derive_code(CHAIN, SIG, i) for i in range(100)}
    assert len(codes) == 100
    assert derive_code(CHAIN, SIG, 7).value == spec_value(CHAIN, SIG, 7)
    with pytest.raises(ValueError):
        derive_code(CHAIN, SIG, -1)
    with pytest.raises(ValueError):
        derive_code(CHAIN, SIG, 2**32)
    with pytest.raises(TypeError):
        derive_code(CHAIN, SIG, True)


def test_derivation_matches_independent_spec_implementation():
    rng = random.Random(7)
    for i in range(200):
        chain, sig = f"chain/{i}/\u00e9\u4e2d", rng.randbytes(64)
        assert derive_code(chain, sig).value == spec_value(chain, sig)


def test_derive_is_deterministic_and_accepts_bytearray():
    assert derive_code(CHAIN, SIG) == derive_code(CHAIN, SIG)
    assert derive_code(CHAIN, bytearray(SIG)) == derive_code(CHAIN, SIG)


def test_derive_separates_chains_and_signatures():
    base = derive_code(CHAIN, SIG)
    assert derive_code(CHAIN + "x", SIG) != base
    assert derive_code("other-chain", SIG) != base
    assert derive_code(CHAIN, SIG[:-1] + b"\xff") != base
    # A NUL inside chain_id cannot shift bytes between chain_id and signature.
    assert derive_code("a\x00", bytes(64)) != derive_code("a", b"\x00" + bytes(63))


@pytest.mark.parametrize(
    "chain_id, signature, exc",
    [
        (None, SIG, TypeError),
        (b"chain", SIG, TypeError),
        (CHAIN, SIG.hex(), TypeError),
        (CHAIN, None, TypeError),
        (CHAIN, list(SIG), TypeError),
        ("", SIG, ValueError),
        (CHAIN, SIG[:63], ValueError),
        (CHAIN, SIG + b"\x00", ValueError),
        (CHAIN, b"", ValueError),
        ("bad\ud800", SIG, ValueError),
    ],
)
def test_derive_rejects_misuse(chain_id, signature, exc):
    with pytest.raises(exc):
        derive_code(chain_id, signature)


def test_value_range_has_at_least_100_bits_of_entropy():
    assert DATA_BITS == 115 and DATA_BITS >= 100
    values = [c.value for c in random_codes(4000, 2)]
    assert len(set(values)) == len(values)
    assert all(0 <= v < 2**115 for v in values)
    assert max(v.bit_length() for v in values) == 115  # top bit is used
    # Every one of the 115 bits is set in roughly half the samples (4000 samples:
    # sd ~ 32, bounds are > 9 sd away).
    for bit in range(115):
        ones = sum((v >> bit) & 1 for v in values)
        assert 1700 < ones < 2300, bit


# --------------------------------------------------------------------------- DepositCode


def test_printed_compact_key_value():
    code = parse_code(VECTOR_PRINTED)
    assert str(code) == VECTOR_PRINTED and len(str(code)) == 32
    assert code.compact == VECTOR_PRINTED[3:].replace("-", "")
    assert len(code.compact) == 25
    assert code.key == code.compact.encode("ascii")
    assert repr(code) == f"DepositCode({VECTOR_PRINTED!r})"
    assert DepositCode(code.value) == code


def test_checksum_makes_number_divisible_by_1021():
    assert CHECK_MODULUS == 1021
    for code in random_codes(300, 3) + [DepositCode(0), DepositCode(2**115 - 1)]:
        assert as_number(code.compact) % 1021 == 0
        assert as_number(code.compact[23:]) < 1021
        assert as_number(code.compact[:23]) == code.value


def test_extreme_values_round_trip():
    for v in (0, 1, 2**115 - 1, 2**114):
        code = DepositCode(v)
        assert parse_code(str(code)) == code
        assert DepositCode.from_compact(code.compact) == code


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (2**115, ValueError), (True, TypeError),
                                      (1.0, TypeError), ("1", TypeError), (None, TypeError)])
def test_constructor_validates(bad, exc):
    with pytest.raises(exc):
        DepositCode(bad)


def test_frozen_slotted_ordered_hashable():
    a, b = DepositCode(5), DepositCode(7)
    assert a < b and b > a and a <= DepositCode(5)
    assert sorted([b, a]) == [a, b]
    assert hash(a) == hash(DepositCode(5)) and len({a, DepositCode(5), b}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = 6  # type: ignore[misc]
    assert not hasattr(a, "__dict__")
    assert DepositCode.__slots__ == ("value",)


def test_from_compact_is_strict():
    code = parse_code(VECTOR_PRINTED)
    assert DepositCode.from_compact(code.compact) == code
    for bad in (code.compact.lower(), str(code), code.compact[:-1], code.compact + "0",
                "I" + code.compact[1:], ""):
        with pytest.raises(CodeError):
            DepositCode.from_compact(bad)
    with pytest.raises(CodeError) as info:
        DepositCode.from_compact(code.compact[:-1] + ("0" if code.compact[-1] != "0" else "1"))
    assert info.value.detail == "bad_checksum"
    with pytest.raises(TypeError):
        DepositCode.from_compact(code.key)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- accepted forms


def test_round_trip_forms():
    for code in random_codes(100, 4):
        printed = str(code)
        forms = [
            printed,
            printed.lower(),
            printed[3:],  # missing prefix
            code.compact,
            "EV" + code.compact,
            " ".join(printed[3:].split("-")),  # spaces instead of hyphens
            "  " + printed.replace("-", " - ") + "\n",
            fullwidth(printed),
            fullwidth(printed.lower()).replace("-", "\u3000"),
            printed.replace("-", "\uff0d"),
            "\ufeff" + printed.replace("-", "\u2013") + "\u200b",
        ]
        for form in forms:
            assert parse_code(form) == code, form
            assert is_well_formed(form)
            assert partial_check(form) == "ok"


@pytest.mark.parametrize("sep", list(" \t\r\n\u00a0\u2002\u2009\u202f\u3000\u200b\ufeff"
                                     "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"))
def test_each_separator_is_ignored(sep):
    code = parse_code(VECTOR_PRINTED)
    assert parse_code(sep.join(VECTOR_PRINTED.split("-"))) == code
    assert parse_code(sep + code.compact + sep) == code


def test_reading_aids_i_l_o():
    code = DepositCode.from_compact("1" * 23 + DepositCode(as_number("1" * 23)).compact[23:])
    assert parse_code("I" * 23 + code.compact[23:]) == code
    assert parse_code("l" * 23 + code.compact[23:]) == code
    assert parse_code(fullwidth("i" * 12 + "L" * 11) + code.compact[23:]) == code
    zero = DepositCode(0)
    assert parse_code("EV-" + "O" * 23 + zero.compact[23:]) == zero
    assert parse_code("o" * 23 + zero.compact[23:].lower()) == zero


def test_prefix_only_stripped_at_27_symbols():
    # A code whose data really starts with "EV" parses without prefix, and with it.
    value = as_number("EV" + "0" * 21)
    code = DepositCode(value)
    assert code.compact.startswith("EV")
    assert parse_code(code.compact) == code
    assert parse_code("EV-" + code.compact) == code
    assert parse_code(str(code)) == code


def test_maximum_input_length_is_accepted():
    code = parse_code(VECTOR_PRINTED)
    padded = VECTOR_PRINTED.center(MAX_INPUT_CHARS)
    assert len(padded) == 64
    assert parse_code(padded) == code
    assert error_of(padded + " ").detail == "too_long"


# --------------------------------------------------------------------------- typo detection


def _substitutions(compact: str):
    for pos in range(25):
        for sym in ALPHABET:
            if sym != compact[pos]:
                yield compact[:pos] + sym + compact[pos + 1 :]


def _adjacent_swaps(compact: str):
    for pos in range(24):
        a, b = compact[pos], compact[pos + 1]
        if a != b:
            yield compact[:pos] + b + a + compact[pos + 2 :]


def test_every_substitution_and_adjacent_swap_is_detected_exhaustively():
    codes = random_codes(300, 5) + [DepositCode(0), DepositCode(2**115 - 1)]
    subs = swaps = 0
    for code in codes:
        for typo in _substitutions(code.compact):
            assert error_of(typo).detail == "bad_checksum", (code, typo)
            subs += 1
        for typo in _adjacent_swaps(code.compact):
            assert error_of("EV-" + typo).detail == "bad_checksum", (code, typo)
            swaps += 1
    assert subs == len(codes) * 25 * 31
    assert swaps > len(codes) * 20


def test_substitution_in_printed_form_reports_typo_not_success():
    typo = VECTOR_PRINTED[:5] + ("A" if VECTOR_PRINTED[5] != "A" else "B") + VECTOR_PRINTED[6:]
    err = error_of(typo)
    assert err.detail == "bad_checksum"
    assert str(err) == "checksum does not match: probably a typing error"
    assert partial_check(typo) == "bad_checksum"
    assert not is_well_formed(typo)


def test_noncanonical_check_value_is_rejected():
    # Check values 1021..1023 fit in two symbols; X ≡ 0 may hold for them, but
    # only c < 1021 is canonical, so each value has exactly one spelling.
    for value in range(3 * 1021):
        c = (-value * 1024) % 1021
        if c + 1021 < 1024:
            high = c + 1021
            compact = DepositCode(value).compact[:23] + ALPHABET[high >> 5] + ALPHABET[high & 31]
            assert as_number(compact) % 1021 == 0
            assert error_of(compact).detail == "bad_checksum"
            break
    else:  # pragma: no cover
        pytest.fail("no value with a non-canonical check value found")


# --------------------------------------------------------------------------- malformed classes


@pytest.mark.parametrize("text", ["", " ", "---", " \u3000-\u2014 ", "\ufeff"])
def test_empty(text):
    err = error_of(text)
    assert err.detail == "empty"
    assert "no deposit code" in str(err)
    assert partial_check(text) == "incomplete"


def test_too_long_is_rejected_before_work():
    for text in ["0" * 65, "U" * 65, "\ud800" * 1000, VECTOR_PRINTED * 100, "x" * 10**7]:
        err = error_of(text)
        assert err.detail == "too_long"
        assert str(len(text)) in str(err) and "64" in str(err)
        assert partial_check(text) == "too_long"


@pytest.mark.parametrize(
    "text, char, position",
    [
        ("EV-WEP32-HB4ZR-JJEAS-2H5DU-B0EYM", "U", 26),
        ("EV-WEP32-HB4ZR-JJEAS-2H5Du-B0EYM", "u", 26),
        ("EV_WEP32-HB4ZR-JJEAS-2H5DB-B0EYM", "_", 3),
        ("EV-WEP32.HB4ZR-JJEAS-2H5DB-B0EYM", ".", 9),
        ("\u0131EP32-HB4ZR-JJEAS-2H5DB-B0EYM", "\u0131", 1),  # dotless i: upper() is I
        ("\u017fEP32", "\u017f", 1),  # long s: upper() is S
        ("\u212aEP32", "\u212a", 1),  # Kelvin sign: lower() is k
        ("WEP3\u0663", "\u0663", 5),  # Arabic-Indic 3: isdigit() is True
        ("WEP32\U0001f600", "\U0001f600", 6),
        ("\uff25\uff36\uff0d\uff35", "\uff35", 4),  # full-width U
        ("WEP32\u00e9", "\u00e9", 6),
    ],
)
def test_bad_character_names_char_and_position(text, char, position):
    err = error_of(text)
    assert err.detail == "bad_character"
    assert err.position == position
    assert f"position {position}" in str(err)
    assert f"U+{ord(char):04X}" in str(err)
    assert repr(char) in str(err)
    assert partial_check(text) == "bad_character"


@pytest.mark.parametrize("char", ["\u202e", "\u200d", "\x00", "\ud800", "\x1b", "\u0085", "\u2028"])
def test_invisible_or_control_characters_are_named_by_codepoint_only(char):
    err = error_of("WEP" + char + "32")
    assert err.detail == "bad_character" and err.position == 4
    assert f"U+{ord(char):04X}" in str(err)
    assert char not in str(err)  # never echo invisible/bidi/surrogate characters raw
    str(err).encode("utf-8")  # safe to log


def test_letter_u_gets_a_hint():
    assert "letter U is never used" in str(error_of("WEPU2"))


@pytest.mark.parametrize(
    "text, found, hint",
    [
        (VECTOR_PRINTED[3:-1], "found 24 symbols", "missing"),
        (VECTOR_PRINTED[3:] + "0", "found 26 symbols", "extra"),
        (VECTOR_PRINTED[:-1], "found 26 symbols (24 after the EV prefix)", "missing"),
        (VECTOR_PRINTED + "0", "found 28 symbols (26 after the EV prefix)", "extra"),
        ("EW" + VECTOR_PRINTED[2:], "found 27 symbols", "prefix is mistyped"),
        ("ABC", "found 3 symbols", "missing"),
    ],
)
def test_wrong_length_says_how_many(text, found, hint):
    err = error_of(text)
    assert err.detail == "wrong_length"
    assert found in str(err) and "25" in str(err) and hint in str(err)


@pytest.mark.parametrize(
    "bad", [None, b"EV-WEP32", bytearray(b"x"), 42, ["E", "V"], memoryview(b"")]
)
def test_non_str_is_type_error(bad):
    for fn in (parse_code, is_well_formed, partial_check):
        with pytest.raises(TypeError):
            fn(bad)


# --------------------------------------------------------------------------- partial_check


def test_partial_check_while_typing_the_printed_form():
    code = parse_code(VECTOR_PRINTED)
    for printed in (VECTOR_PRINTED, VECTOR_PRINTED[3:], VECTOR_PRINTED.lower()):
        for i in range(len(printed)):
            prefix = printed[:i]
            expected = "ok" if is_well_formed(prefix) else "incomplete"
            assert partial_check(prefix) == expected, prefix
        assert partial_check(printed) == "ok"
    assert partial_check(str(code) + "0") == "too_long"
    assert partial_check(code.compact + "00") == "too_long"
    assert partial_check("x" * 65) == "too_long"
    assert partial_check("WEP3U") == "bad_character"
    assert partial_check("WEP3U" + "x" * 100) == "too_long"


def test_partial_check_bad_checksum_and_ev_ambiguity():
    code = parse_code(VECTOR_PRINTED)
    typo = "0" + code.compact[1:] if code.compact[0] != "0" else "1" + code.compact[1:]
    assert partial_check(typo) == "bad_checksum"
    assert partial_check("EV" + typo) == "bad_checksum"
    # 25 symbols starting with EV that fail the checksum may be prefix + 23: keep typing.
    ev_typo = "EV" + code.compact[2:]
    if not is_well_formed(ev_typo):
        assert partial_check(ev_typo) == "incomplete"
        assert error_of(ev_typo).detail == "bad_checksum"
