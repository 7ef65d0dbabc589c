"""Property tests for ledger.codes (hypothesis)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.codes import (
    ALPHABET,
    DepositCode,
    derive_code,
    is_well_formed,
    parse_code,
    partial_check,
)
from ledger.errors import CodeError

DETAILS = {"empty", "too_long", "bad_character", "wrong_length", "bad_checksum"}
PARTIAL = {"incomplete", "bad_character", "too_long", "bad_checksum", "ok"}
SEPARATORS = [" ", "-", "\u00a0", "\u3000", "\uff0d", "\u2010", "\u2013", "\u2014", "\u2212", "\t"]

values = st.integers(min_value=0, max_value=2**115 - 1)
codes = st.one_of(
    values.map(DepositCode),
    # st.text() never draws surrogates, so every chain id is UTF-8 encodable.
    st.builds(derive_code, st.text(min_size=1, max_size=20), st.binary(min_size=64, max_size=64)),
)
# Alphabet biased toward "interesting" characters so that random text reaches every
# parser branch, not only bad_character at position 1.
near_alphabet = st.sampled_from(
    list(ALPHABET) + list("ilouIOLUEVev") + SEPARATORS
    + ["\uff21", "\uff45", "\uff10", "\uff35", "\u0131", "\u212a", "\u0663"]
    + ["\ufeff", "\u200b", "\ud800"]
)


def _parse_outcome(text):
    try:
        return parse_code(text)
    except CodeError as err:
        assert err.reason == "malformed_code"
        assert err.detail in DETAILS
        assert str(err)
        str(err).encode("utf-8")  # message is always loggable
        return err


@given(codes)
def test_round_trip_printed_compact_key(code):
    assert len(str(code)) == 32 and str(code).startswith("EV-")
    assert parse_code(str(code)) == code
    assert parse_code(code.compact) == code
    assert DepositCode.from_compact(code.compact) == code
    assert DepositCode.from_compact(code.key.decode("ascii")) == code


@given(codes, st.data())
def test_round_trip_with_random_presentation(code, data):
    prefix = data.draw(st.sampled_from(["", "EV", "ev", "EV-", "Ev ", "\uff25\uff36\uff0d"]))
    out = []
    for ch in prefix + code.compact:
        style = data.draw(st.sampled_from(["upper", "lower", "fw_upper", "fw_lower"]))
        ch = ch.lower() if style.endswith("lower") else ch
        if style.startswith("fw") and ch.isascii() and ch.isalnum():
            ch = chr(ord(ch) + 0xFEE0)
        out.append(ch)
        out.append(data.draw(st.sampled_from(["", "", "", *SEPARATORS])))
    text = "".join(out)
    if len(text) <= 64:
        assert parse_code(text) == code
        assert partial_check(text) == "ok"


@given(codes, st.integers(0, 24), st.integers(1, 31))
def test_every_single_substitution_is_detected(code, pos, delta):
    compact = code.compact
    new = ALPHABET[(ALPHABET.index(compact[pos]) + delta) % 32]
    typo = compact[:pos] + new + compact[pos + 1 :]
    out = _parse_outcome(typo)
    assert isinstance(out, CodeError) and out.detail == "bad_checksum"
    # "incomplete" only if the typo starts with EV (it might be prefix + 23 symbols)
    assert partial_check(typo) in {"bad_checksum", "incomplete"}


@given(codes, st.integers(0, 23))
def test_every_adjacent_swap_is_detected(code, pos):
    compact = code.compact
    a, b = compact[pos], compact[pos + 1]
    typo = compact[:pos] + b + a + compact[pos + 2 :]
    out = _parse_outcome("EV-" + typo)
    if a == b:
        assert out == code
    else:
        assert isinstance(out, CodeError) and out.detail == "bad_checksum"


@given(codes, st.integers(0, 24))
def test_deletion_and_insertion_are_wrong_length(code, pos):
    deleted = code.compact[:pos] + code.compact[pos + 1 :]
    inserted = code.compact[:pos] + "7" + code.compact[pos:]
    for typo in (deleted, inserted, "EV-" + deleted, "EV-" + inserted):
        out = _parse_outcome(typo)
        assert isinstance(out, CodeError) and out.detail == "wrong_length"


@settings(max_examples=500)
@given(st.one_of(st.text(), st.text(near_alphabet, max_size=80)))
@example("")
@example("\ud800")
@example("x" * 100_000)
def test_hostile_text_only_raises_code_error_and_partial_check_agrees(text):
    out = _parse_outcome(text)
    status = partial_check(text)
    assert status in PARTIAL
    assert is_well_formed(text) == (not isinstance(out, CodeError))
    assert (status == "ok") == is_well_formed(text)
    if isinstance(out, CodeError):
        if out.detail == "too_long":
            assert len(text) > 64 and status == "too_long"
        if out.detail == "bad_character":
            assert status == "bad_character"
            assert 1 <= out.position <= len(text)
    else:
        assert parse_code(str(out)) == out


@given(st.one_of(st.none(), st.binary(), st.integers(), st.floats(), st.lists(st.text())))
def test_non_str_is_type_error(obj):
    for fn in (parse_code, is_well_formed, partial_check):
        try:
            fn(obj)
        except TypeError:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"{fn.__name__} accepted {obj!r}")


@given(values, values)
def test_ordering_and_hash_follow_value(a, b):
    ca, cb = DepositCode(a), DepositCode(b)
    assert (ca < cb) == (a < b) and (ca == cb) == (a == b)
    if a == b:
        assert hash(ca) == hash(cb)


@given(
    st.text(min_size=1, max_size=10),
    st.text(min_size=1, max_size=10),
    st.binary(min_size=64, max_size=64),
)
def test_derive_is_deterministic_and_chain_separated(chain_a, chain_b, sig):
    assert derive_code(chain_a, sig) == derive_code(chain_a, sig)
    if chain_a != chain_b:
        assert derive_code(chain_a, sig) != derive_code(chain_b, sig)


@given(st.text(st.sampled_from(ALPHABET), min_size=25, max_size=25))
def test_any_25_symbols_are_either_a_code_or_a_checksum_error(compact):
    out = _parse_outcome(compact)
    if isinstance(out, CodeError):
        assert out.detail == "bad_checksum"
        expected = "incomplete" if compact.startswith("EV") else "bad_checksum"
        assert partial_check(compact) == expected
    else:
        assert out.compact == compact and partial_check(compact) == "ok"
