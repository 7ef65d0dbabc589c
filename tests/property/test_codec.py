"""Canonical msgpack: round trips, and every non-canonical or hostile input refused."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from ledger.codec import Fields, Limits, decode, encode
from ledger.errors import DecodeError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=8), st.integers(0, 9), min_size=2, max_size=8))
def test_map_keys_are_sorted_by_utf8_whatever_the_insertion_order(mapping):
    reversed_map = dict(reversed(list(mapping.items())))
    assert encode(mapping) == encode(reversed_map)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 9), min_size=2, max_size=8))
def test_unsorted_map_keys_are_rejected(mapping):
    keys = sorted(mapping, key=lambda k: k.encode())
    unsorted = {k: mapping[k] for k in reversed(keys)}
    data = msgpack.packb(unsorted, use_bin_type=True)
    with pytest.raises(DecodeError, match="sorted"):
        decode(data)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_over_long_integer_encodings_are_rejected(n):
    canonical = encode(n)
    long_form = b"\xcf" + struct.pack(">Q", n)  # uint64 encoding of any value
    if long_form != canonical:
        with pytest.raises(DecodeError, match="non-canonical"):
            decode(long_form)


def test_str_sent_as_bin_and_bin_as_str_are_rejected():
    assert decode(encode("ab")) == "ab"
    with pytest.raises(DecodeError):
        decode(b"\xd9\x02ab")  # str8 for a 2-byte string: not the shortest form
    # bytes must be bin: a str header around non-UTF-8 bytes is not valid
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(b"\xa2\xff\xfe")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\xcb" + struct.pack(">d", 1.5), "floating-point"),
        (b"\xca" + struct.pack(">f", 1.5), "floating-point"),
        (b"\x91\xcb" + struct.pack(">d", 0.0), "floating-point"),
        (b"\xd4\x01\x00", "ext"),
        (b"\x01\x02", "trailing"),
        (b"\x92\x01", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (b"\x82\xa1a\x01\xa1a\x02", "non-canonical"),  # duplicate key
        (b"\x81\x01\x02", "not valid msgpack"),  # non-str map key
        (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),  # array32 claiming 4G items
    ],
)
def test_hostile_bytes_are_rejected_with_a_reason(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_size_limits_are_checked_before_parsing():
    with pytest.raises(DecodeError, match="exceeds the limit") as info:
        decode(encode(b"x" * 100), Limits(max_bytes=50))
    assert info.value.reason == "too_large"
    with pytest.raises(DecodeError):
        decode(encode("x" * 100), Limits(max_str=10))
    with pytest.raises(DecodeError):
        decode(encode(list(range(100))), Limits(max_array=10))


def test_deep_nesting_is_rejected():
    deep = b"\x91" * 40 + b"\x00"
    with pytest.raises(DecodeError, match="nested"):
        decode(deep)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data):
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


@given(values, st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=7))
def test_a_flipped_bit_is_either_rejected_or_decodes_to_its_own_canonical_form(value, pos, bit):
    data = bytearray(encode(value))
    pos %= len(data)
    data[pos] ^= 1 << bit
    try:
        again = decode(bytes(data))
    except DecodeError:
        return
    assert encode(again) == bytes(data)


def test_encode_refuses_values_without_canonical_form():
    for bad in (1.5, {1: 2}, object(), 2**64, -(2**63) - 1, {"a": {1.0}}):
        with pytest.raises(TypeError):
            encode(bad)


def test_fields_names_the_wrong_field():
    reader = Fields("thing", ["thing", 1, b"x" * 31, "name"], 4)
    reader.header("thing", 1)
    with pytest.raises(DecodeError, match=r"thing\.digest: expected 32 bytes, got 31"):
        reader.bytes("digest", 32)
    with pytest.raises(DecodeError, match="expected 3 fields, got 2"):
        Fields("thing", ["thing", 1], 3)
    with pytest.raises(DecodeError, match="unsupported version 2") as info:
        Fields("thing", ["thing", 2], 2).header("thing", 1)
    assert info.value.reason == "unsupported_version"
    with pytest.raises(DecodeError, match="expected 'thing'"):
        Fields("thing", ["other", 1], 2).header("thing", 1)
