"""Unit tests for ledger.genesis: the strict consortium-file parser and its round trip."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.block import ValidatorSet
from ledger.codec import encode
from ledger.crypto import PublicKey, SecretKey
from ledger.errors import GenesisError
from ledger.genesis import (
    CONSENSUS_PARAMS,
    DEFAULT_CATEGORIES,
    FORMAT,
    LIMIT_PARAMS,
    MAX_GENESIS_BYTES,
    REQUIRED_CATEGORY_IDS,
    ConsensusParams,
    EntryLimits,
    Genesis,
    Member,
    Node,
    build_genesis,
    format_time,
    load_genesis,
    parse_genesis,
    parse_genesis_bytes,
    parse_time,
)
from ledger.model import ROLES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "genesis.example.json"


def pub(i: int) -> PublicKey:
    return SecretKey(bytes([i]) * 32).public


def valid_doc() -> dict:
    """A small valid genesis document (3 validators, an observer, clients)."""
    members = [
        {"name": "court-node", "display_name": "北京互联网法院", "institution": "internet-court",
         "roles": ["validator"],
         "public_key": pub(1).hex, "node": {"peer": "127.0.0.1:7301", "api": "http://127.0.0.1:7401"}},
        {"name": "bank-node", "display_name": "银行", "institution": "bank", "roles": ["validator"],
         "public_key": pub(2).hex, "node": {"peer": "bank.example:7302", "api": "https://bank.example"}},
        {"name": "notary-node", "display_name": "公证处", "institution": "notary", "roles": ["validator"],
         "public_key": pub(3).hex, "node": {"peer": "[::1]:7303", "api": "http://[::1]:7403"}},
        {"name": "observer", "display_name": "观察节点", "institution": "forensic", "roles": ["observer"],
         "public_key": pub(4).hex, "node": {"peer": "127.0.0.1:7304", "api": "http://127.0.0.1:7404"}},
        {"name": "ecommerce", "display_name": "电商平台", "institution": "shop", "roles": ["depositor"],
         "public_key": pub(5).hex, "node": None},
        {"name": "court", "display_name": "北京互联网法院", "institution": "internet-court",
         "roles": ["credit-source", "court"], "public_key": pub(6).hex, "node": None},
    ]
    return {
        "format": FORMAT,
        "chain_id": "evledger-test",
        "display_name": "测试链",
        "created_at": "2025-03-01T08:30:00.250Z",
        "members": members,
        "consensus": {"batch_delay_ms": 5, "checkpoint_interval": 32, "watermark_window": 64},
        "categories": [c.to_doc() for c in DEFAULT_CATEGORIES] + [
            {"id": "patent", "display_name": "专利", "display_name_en": "Patent"}],
        "limits": {"max_items_per_deposit": 500},
    }


def error_for(doc) -> GenesisError:
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    return info.value


# --------------------------------------------------------------------------- valid input


def test_valid_document_parses():
    g = parse_genesis(valid_doc())
    assert g.chain_id == "evledger-test"
    assert g.created_at == parse_time("2025-03-01T08:30:00.250Z") == 1740817800250
    assert [m.name for m in g.members_with_role("validator")] == ["court-node", "bank-node", "notary-node"]
    assert g.member("court").roles == ("court", "credit-source")  # sorted
    assert g.member("court").institution == g.member("court-node").institution
    assert g.member("nobody") is None
    assert g.consensus.batch_delay_ms == 5 and g.consensus.batch_max_entries == 2000  # default filled
    assert g.limits == EntryLimits(max_items_per_deposit=500)
    assert g.category_ids[-1] == "patent"
    vs = g.validator_set()
    assert isinstance(vs, ValidatorSet) and vs.n == 3 and vs.quorum == 2
    assert vs.key("bank-node") == pub(2)
    with pytest.raises(ValueError):
        g.members_with_role("judge")


def test_example_config_loads():
    """config/genesis.example.json: 4 validators (court, notary, carrier, bank), an observer, clients."""
    g = load_genesis(EXAMPLE)
    validators = g.members_with_role("validator")
    assert len(validators) == 4
    assert {m.institution for m in validators} >= {"internet-court", "notary-office", "telecom-carrier",
                                                   "commercial-bank"}
    assert len(g.members_with_role("observer")) >= 1
    depositors = {m.name for m in g.members_with_role("depositor")}
    assert {"ecommerce", "copyright"} <= depositors
    assert g.members_with_role("arbitration") and g.members_with_role("credit-source")
    assert g.validator_set().quorum == 3
    assert set(REQUIRED_CATEGORY_IDS) <= set(g.category_ids)
    # the file is exactly what to_json writes (so cluster init output and the example look alike)
    assert EXAMPLE.read_text(encoding="utf-8") == g.to_json()


def test_example_config_commits_no_secret_key():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "secret" not in text
    assert not list((ROOT / "config").glob("*.key"))


def test_round_trip_json_and_doc():
    g = parse_genesis(valid_doc())
    again = parse_genesis_bytes(g.to_json().encode("utf-8"))
    assert again == g
    assert again.fingerprint() == g.fingerprint()
    assert parse_genesis(g.to_doc()) == g
    assert parse_genesis(json.loads(g.to_json())).to_json() == g.to_json()


def test_fingerprint_ignores_presentation_but_not_content():
    doc = valid_doc()
    g = parse_genesis(doc)
    # defaults written out, keys reordered, same instant spelt differently: same genesis
    other = copy.deepcopy(doc)
    other["consensus"] = {p.name: getattr(g.consensus, p.name) for p in reversed(CONSENSUS_PARAMS)}
    other["limits"] = g.limits.to_doc()
    other["created_at"] = "2025-03-01T08:30:00.25Z"
    other = dict(reversed(list(other.items())))
    assert parse_genesis(other).fingerprint() == g.fingerprint()
    # any change of content changes it
    for mutate in (
        lambda d: d.__setitem__("chain_id", "evledger-prod"),
        lambda d: d["members"][0].__setitem__("public_key", pub(9).hex),
        lambda d: d["members"][4]["roles"].append("notary"),
        lambda d: d["consensus"].__setitem__("batch_delay_ms", 6),
        lambda d: d["categories"].reverse(),
        lambda d: d["limits"].__setitem__("max_items_per_deposit", 501),
        lambda d: d.__setitem__("created_at", "2025-03-01T08:30:00.251Z"),
    ):
        changed = copy.deepcopy(doc)
        mutate(changed)
        assert parse_genesis(changed).fingerprint() != g.fingerprint()


def test_fingerprint_wire_layout_is_as_documented():
    g = parse_genesis(valid_doc())
    doc = valid_doc()
    members = []
    for m in doc["members"]:
        node = None if m["node"] is None else [m["node"]["peer"], m["node"]["api"]]
        members.append([m["name"], m["display_name"], m["institution"], sorted(m["roles"]),
                        bytes.fromhex(m["public_key"]), node])
    consensus = {p.name: doc["consensus"].get(p.name, p.default) for p in CONSENSUS_PARAMS}
    limits = {p.name: doc["limits"].get(p.name, p.default) for p in LIMIT_PARAMS}
    cats = [[c["id"], c["display_name"], c["display_name_en"]] for c in doc["categories"]]
    wire = ["evledger-genesis", 1, doc["chain_id"], doc["display_name"], 1740817800250, members, consensus, cats,
            limits]
    assert g.fingerprint() == hashlib.sha256(encode(wire)).hexdigest()
    assert g.hash().hex() == g.fingerprint()


def test_defaults_match_documented_tables():
    assert ConsensusParams().to_doc() == {p.name: p.default for p in CONSENSUS_PARAMS}
    assert EntryLimits().to_doc() == {p.name: p.default for p in LIMIT_PARAMS}
    assert ConsensusParams().batch_max_bytes == 128 * 1024
    defaults = ConsensusParams()
    assert defaults.watermark_window % defaults.checkpoint_interval == 0
    assert 4 * defaults.watermark_window * defaults.batch_max_bytes <= 56 * 1024 * 1024  # n = 4: quorum 3


@pytest.mark.parametrize("consensus, field, message", [
    ({"checkpoint_interval": 16, "watermark_window": 40}, "consensus.watermark_window", "not a multiple"),
    ({"batch_max_bytes": 1024 * 1024, "checkpoint_interval": 64, "watermark_window": 128},
     "consensus.batch_max_bytes", "new-view message"),
])
def test_consensus_cross_rules_keep_view_changes_sendable(consensus, field, message):
    doc = json.loads(Path(EXAMPLE).read_text())
    doc["consensus"].update(consensus)
    with pytest.raises(GenesisError, match=message) as info:
        parse_genesis(doc)
    assert info.value.field == field
    assert ConsensusParams().max_clock_skew_ms == 30_000
    assert EntryLimits().max_items_per_deposit == 1000
    ids = [c.id for c in DEFAULT_CATEGORIES]
    assert ids[0] == "general" and len(set(ids)) == len(ids) == 11
    assert all(c.display_name and c.display_name_en for c in DEFAULT_CATEGORIES)


def test_genesis_is_frozen():
    g = parse_genesis(valid_doc())
    with pytest.raises(AttributeError):
        g.chain_id = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        g.members[0].roles = ()  # type: ignore[misc]
    assert isinstance(g.members, tuple) and isinstance(g.categories, tuple)
    assert hash(g) == hash(parse_genesis(valid_doc()))


def test_time_helpers():
    for text in ("1970-01-01T00:00:00Z", "2025-12-31T23:59:59.999Z", "2024-02-29T12:00:00.5Z"):
        assert parse_time(format_time(parse_time(text))) == parse_time(text)
    assert format_time(1740817800250) == "2025-03-01T08:30:00.250Z"
    assert format_time(1740817800000) == "2025-03-01T08:30:00Z"


# --------------------------------------------------------------------------- bad input


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        d[last] = value
    return mutate


def _delete(path):
    def mutate(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        del d[last]
    return mutate


def _append(path, value):
    def mutate(d):
        for p in path:
            d = d[p]
        d.append(value)
    return mutate


BAD = [
    # (mutation, field, message fragment)
    (_set(["extra"], 1), "extra", "unknown key 'extra' (valid: categories, chain_id, consensus"),
    (_set(["members", 2, "roles", 0], "judge"), "members[2].roles[0]",
     "unknown role 'judge' (valid: arbitration, court, credit-source, depositor, notary, observer, procuratorate, "
     "validator)"),
    (_set(["members", 1, "nick"], "x"), "members[1].nick", "valid: display_name, institution, name, node"),
    (_set(["members", 0, "node", "rpc"], "x"), "members[0].node.rpc", "valid: api, peer"),
    (_set(["consensus", "batch_size"], 1), "consensus.batch_size", "valid: batch_delay_ms"),
    (_set(["limits", "max_items"], 1), "limits.max_items", "valid: client_time_window_ms"),
    (_set(["categories", 0, "color"], "red"), "categories[0].color", "valid: display_name, display_name_en, id"),
    (_delete(["chain_id"]), "chain_id", "missing required key"),
    (_delete(["consensus"]), "consensus", "missing required key"),
    (_delete(["members", 3, "node"]), "members[3].node", "missing required key"),
    (_delete(["categories", 2, "display_name_en"]), "categories[2].display_name_en", "missing"),
    (_set(["format"], "evledger-genesis/2"), "format", "unsupported format"),
    (_set(["chain_id"], 5), "chain_id", "expected a string, got integer"),
    (_set(["chain_id"], "Evledger"), "chain_id", "not a valid name"),
    (_set(["chain_id"], "-x"), "chain_id", "not a valid name"),
    (_set(["display_name"], ""), "display_name", "must not be empty"),
    (_set(["display_name"], "x" * 129), "display_name", "exceed the limit of 128"),
    (_set(["display_name"], "法院\u202egnp.exe"), "display_name", "U+202E"),
    (_set(["display_name"], "a\nb"), "display_name", "U+000A"),
    (_set(["display_name"], "\ud800"), "display_name", "lone surrogate"),
    (_set(["created_at"], "2025-03-01 08:30:00Z"), "created_at", "RFC 3339"),
    (_set(["created_at"], "2025-03-01T08:30:00+08:00"), "created_at", "RFC 3339"),
    (_set(["created_at"], "2025-02-30T08:30:00Z"), "created_at", "not a valid date"),
    (_set(["created_at"], "2025-03-01T08:30:00.1234Z"), "created_at", "millisecond"),
    (_set(["created_at"], "1969-12-31T23:59:59Z"), "created_at", "before 1970"),
    (_set(["created_at"], 1740817800250), "created_at", "got integer"),
    (_set(["members"], []), "members", "at least 1"),
    (_set(["members"], {}), "members", "expected an array, got object"),
    (_set(["members", 0], "court-node"), "members[0]", "expected an object, got string"),
    (_set(["members", 1, "name"], "court-node"), "members[1].name", "already used by members[0]"),
    (_set(["members", 1, "name"], "Bank"), "members[1].name", "not a valid name"),
    (_set(["members", 1, "public_key"], pub(1).hex), "members[1].public_key", "already belongs to members[0]"),
    (_set(["members", 1, "public_key"], pub(2).hex.upper()), "members[1].public_key", "lowercase hex"),
    (_set(["members", 1, "public_key"], "00" * 31), "members[1].public_key", "64 lowercase hex"),
    (_set(["members", 1, "public_key"], None), "members[1].public_key", "got null"),
    (_set(["members", 1, "institution"], "中国银行"), "members[1].institution", "not a valid name"),
    (_set(["members", 1, "display_name"], 7), "members[1].display_name", "expected a string"),
    (_set(["members", 4, "roles"], []), "members[4].roles", "at least 1"),
    (_set(["members", 4, "roles"], "depositor"), "members[4].roles", "expected an array, got string"),
    (_set(["members", 4, "roles"], ["depositor", "depositor"]), "members[4].roles[1]", "listed twice"),
    (_set(["members", 4, "roles"], [7]), "members[4].roles[0]", "got integer"),
    (_set(["members", 3, "roles"], ["observer", "validator"]), "members[3].roles", "node key"),
    (_set(["members", 0, "roles"], ["validator", "court"]), "members[0].roles", "separate client member"),
    (_set(["members", 0, "node"], None), "members[0].node", "must give its node addresses"),
    (_set(["members", 4, "node"], {"peer": "127.0.0.1:7309", "api": "http://127.0.0.1:7409"}), "members[4].node",
     "only validators and observers run nodes"),
    (_set(["members", 0, "node", "peer"], "127.0.0.1"), "members[0].node.peer", "host:port"),
    (_set(["members", 0, "node", "peer"], "127.0.0.1:0"), "members[0].node.peer", "1-65535"),
    (_set(["members", 0, "node", "peer"], "127.0.0.1:70000"), "members[0].node.peer", "1-65535"),
    (_set(["members", 0, "node", "peer"], "[fe80::1::2]:7301"), "members[0].node.peer", "IPv6"),
    (_set(["members", 0, "node", "api"], "ftp://127.0.0.1:7401"), "members[0].node.api", "http://host:port"),
    (_set(["members", 0, "node", "api"], "http://127.0.0.1:7401/x?y"), "members[0].node.api", "http://host:port"),
    (_set(["members", 1, "node", "peer"], "127.0.0.1:7301"), "members[1].node.peer", "already used by members[0]"),
    (_set(["members", 0, "roles"], ["depositor"]), "members[0].node", "only validators and observers"),
    (lambda d: [m.__setitem__("roles", ["observer"]) for m in d["members"][:3]], "members",
     "at least one member must have the role 'validator'"),
    (_set(["consensus"], []), "consensus", "expected an object, got array"),
    (_set(["consensus", "batch_delay_ms"], "10"), "consensus.batch_delay_ms", "expected an integer, got string"),
    (_set(["consensus", "batch_delay_ms"], 10.0), "consensus.batch_delay_ms", "got number 10.0"),
    (_set(["consensus", "batch_delay_ms"], True), "consensus.batch_delay_ms", "got boolean"),
    (_set(["consensus", "batch_max_entries"], 0), "consensus.batch_max_entries", "outside the allowed range [1,"),
    (_set(["consensus", "batch_max_bytes"], 2**70), "consensus.batch_max_bytes", "outside"),
    (_set(["consensus", "watermark_window"], 63), "consensus.watermark_window", "2 * checkpoint_interval"),
    (_set(["consensus", "max_clock_skew_ms"], -1), "consensus.max_clock_skew_ms", "outside"),
    (_set(["limits", "max_meta_keys"], 33), "limits.max_meta_keys", "outside"),
    (_set(["limits", "client_time_window_ms"], 20_000), "limits.client_time_window_ms", "max_clock_skew_ms"),
    (_set(["categories"], []), "categories", "at least 1"),
    (_delete(["categories", 0]), "categories", "missing required category general"),
    (_append(["categories"], {"id": "email", "display_name": "x", "display_name_en": "x"}), "categories[12].id",
     "already defined at categories[6]"),
    (_set(["categories", 11, "id"], "Patent"), "categories[11].id", "not a valid name"),
    (_set(["categories", 11, "display_name"], " "), "categories[11].display_name", "must not be empty"),
]


@pytest.mark.parametrize("mutate, field, fragment", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_input_is_refused_naming_the_field(mutate, field, fragment):
    doc = valid_doc()
    mutate(doc)
    err = error_for(doc)
    assert err.field == field, str(err)
    assert fragment in str(err)
    assert str(err).startswith(field + ": ")
    assert err.reason and isinstance(err, ValueError)


def test_document_must_be_an_object():
    for doc in (None, [], "genesis", 3):
        err = error_for(doc)
        assert err.field == "$"


# --------------------------------------------------------------------------- files


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "genesis.json"
    path.write_bytes(data)
    return path


def load_error(path) -> GenesisError:
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert info.value.field
    return info.value


def test_load_reads_a_file(tmp_path):
    g = parse_genesis(valid_doc())
    assert load_genesis(write(tmp_path, g.to_json().encode())) == g
    assert load_genesis(str(write(tmp_path, g.to_json().encode()))) == g


def test_invalid_json_is_reported_with_line_and_column(tmp_path):
    text = json.dumps(valid_doc(), indent=2).replace('"chain_id": "evledger-test",', '"chain_id": "evledger-test"', 1)
    err = load_error(write(tmp_path, text.encode()))
    assert err.reason == "invalid_json"
    assert "line 4, column 3" in str(err), str(err)


@pytest.mark.parametrize("data, fragment", [
    (b'{"format": 1, "format": 2}', "duplicate key 'format'"),
    (b'{"x": NaN}', "NaN is not allowed"),
    (b'{"x": -Infinity}', "-Infinity is not allowed"),
    (b'\xff\xfe{}', "not UTF-8"),
    (b'', "invalid JSON at line 1, column 1"),
    (b'[' * 100_000 + b']' * 100_000, "nested too deeply"),
    (b'{} {}', "invalid JSON"),
])
def test_bad_files(tmp_path, data, fragment):
    err = load_error(write(tmp_path, data))
    assert fragment in str(err), str(err)


def test_file_size_is_bounded_before_parsing(tmp_path):
    err = load_error(write(tmp_path, b" " * (MAX_GENESIS_BYTES + 1)))
    assert err.reason == "too_large"
    with pytest.raises(GenesisError):
        parse_genesis_bytes(b" " * (MAX_GENESIS_BYTES + 1))


def test_missing_file_and_directory(tmp_path):
    assert load_error(tmp_path / "nope.json").reason == "not_found"
    assert "not a regular file" in str(load_error(tmp_path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "genesis.json"
    os.mkfifo(fifo)
    assert "not a regular file" in str(load_error(fifo))


# --------------------------------------------------------------------------- build_genesis


def test_build_genesis_makes_a_valid_genesis():
    members = [Member.make("v%d" % i, ["validator"], pub(i), node=Node("127.0.0.1:%d" % (7300 + i),
                                                                          "http://127.0.0.1:%d" % (7400 + i)))
               for i in range(1, 5)]
    members.append(Member.make("shop", ["depositor"], pub(10).hex, display_name="电商平台", institution="shop-inc"))
    g = build_genesis("evledger-local", members, created_at=1_700_000_000_000, consensus={"batch_delay_ms": 20})
    assert isinstance(g, Genesis)
    assert g.validator_set().n == 4 and g.validator_set().f == 1
    assert g.consensus.batch_delay_ms == 20
    assert g.categories == DEFAULT_CATEGORIES
    assert g.member("shop").display_name == "电商平台" and g.member("v1").display_name == "v1"
    assert parse_genesis_bytes(g.to_json().encode()) == g
    assert build_genesis("evledger-local", members, created_at=g.created_at_text,
                         consensus=g.consensus, limits=g.limits) == g


def test_build_genesis_validates_like_parse():
    members = [Member.make("v1", ["validator"], pub(1))]  # a validator without a node
    with pytest.raises(GenesisError) as info:
        build_genesis("evledger-local", members, created_at=0)
    assert info.value.field == "members[0].node"
    ok = [Member.make("v1", ["validator"], pub(1), node=Node("h:1", "http://h:2"))]
    with pytest.raises(GenesisError) as info:
        build_genesis("evledger-local", ok, created_at=-5)
    assert info.value.field == "created_at"
    with pytest.raises(GenesisError) as info:
        build_genesis("evledger-local", ok, created_at=0, categories=DEFAULT_CATEGORIES[1:])
    assert info.value.field == "categories"


# --------------------------------------------------------------------------- mutation property


def _paths(value, path=()):
    """Every (path, value) inside a JSON document, the root included."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


def _render(path) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += "[%d]" % p
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", p):
            out += ("." if out else "") + p
        else:
            out += "[%s]" % json.dumps(p if len(p) <= 40 else p[:40] + "...")
    return out or "$"


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _jkind(value) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return {int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(value)]


BASE = valid_doc()
ALL_PATHS = [p for p, _ in _paths(BASE)]
KEY_PATHS = [p for p in ALL_PATHS if p and isinstance(p[-1], str)]
CONTAINER_PATHS = [p for p in ALL_PATHS if isinstance(_get(BASE, p), dict)]
OPTIONAL_PARENTS = {("consensus",), ("limits",)}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def parse_outcome(doc):
    """Parse ``doc``: a Genesis, or a GenesisError that names a field — never anything else."""
    try:
        return parse_genesis(doc)
    except GenesisError as err:
        assert isinstance(err.field, str) and err.field
        assert str(err).startswith(err.field + ": ") or err.field == "$"
        return err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_yield_genesis_error_naming_a_field(data):
    doc = copy.deepcopy(BASE)
    kind = data.draw(st.sampled_from(["delete", "add", "retype", "replace", "duplicate"]))
    if kind == "delete":
        path = data.draw(st.sampled_from(KEY_PATHS))
        del _get(doc, path[:-1])[path[-1]]
        out = parse_outcome(doc)
        if path[:-1] not in OPTIONAL_PARENTS:
            assert isinstance(out, GenesisError) and out.field == _render(path), (path, out)
    elif kind == "add":
        parent = data.draw(st.sampled_from(CONTAINER_PATHS))
        key = data.draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in _get(BASE, parent)))
        _get(doc, parent)[key] = data.draw(json_values)
        out = parse_outcome(doc)
        assert isinstance(out, GenesisError) and out.field == _render(parent + (key,)), (parent, key, out)
    elif kind == "retype":
        path = data.draw(st.sampled_from([p for p in ALL_PATHS if p]))
        old = _get(BASE, path)
        new = data.draw(json_values.filter(lambda v: _jkind(v) != _jkind(old) and not (old is None and
                                                                                       isinstance(v, dict))))
        _get(doc, path[:-1])[path[-1]] = new
        out = parse_outcome(doc)
        assert isinstance(out, GenesisError) and out.field.startswith(_render(path)), (path, new, out)
    elif kind == "replace":
        path = data.draw(st.sampled_from([p for p in ALL_PATHS if p]))
        _get(doc, path[:-1])[path[-1]] = data.draw(json_values)
        parse_outcome(doc)  # may be valid (e.g. another display name), must never crash
    else:
        lists = [p for p in ALL_PATHS if isinstance(_get(BASE, p), list) and _get(BASE, p)]
        path = data.draw(st.sampled_from(lists))
        target = _get(doc, path)
        target.append(copy.deepcopy(target[data.draw(st.integers(0, len(target) - 1))]))
        out = parse_outcome(doc)
        assert isinstance(out, GenesisError), (path, out)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_documents_never_crash(doc):
    parse_outcome(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_never_crash(data):
    try:
        parse_genesis_bytes(data)
    except GenesisError as err:
        assert err.field


def test_roles_constant_is_what_the_parser_lists():
    err = error_for(_with(valid_doc(), ["members", 0, "roles", 0], "x"))
    assert ", ".join(sorted(ROLES)) in str(err)


def _with(doc, path, value):
    _set(path, value)(doc)
    return doc
