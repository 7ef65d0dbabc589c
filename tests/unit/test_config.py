"""Unit tests for runtime.config: node.toml is one frozen, validated object.

Every bad input must be a ``ConfigError`` whose ``field`` and message name the TOML
path of the offending value (STYLE lesson 10), never another exception and never a
silent default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

import pytest

import runtime.config as config_module
from ledger.crypto import SecretKey, write_key_file
from ledger.errors import InputError
from ledger.genesis import Member, Node, build_genesis
from runtime.config import (
    KEYS,
    Address,
    ConfigError,
    NodeConfig,
    load_config,
    load_node,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "node.example.toml"

KEYS_BY_NAME = {
    "court-node": SecretKey(bytes([1]) * 32),
    "watch-node": SecretKey(bytes([2]) * 32),
    "shop": SecretKey(bytes([3]) * 32),
}

VALID = """\
[node]
name = "court-node"
genesis = "../genesis.json"
key = "node.key"
data_dir = "data"

[api]
listen = "127.0.0.1:7401"

[peer]
listen = "127.0.0.1:7301"
"""


@pytest.fixture
def consortium(tmp_path: Path) -> Path:
    """A genesis (validator court-node, observer watch-node, client shop) and court-node's folder."""
    members = [
        Member.make("court-node", ["validator"], KEYS_BY_NAME["court-node"].public,
                    node=Node("127.0.0.1:7301", "http://127.0.0.1:7401")),
        Member.make("watch-node", ["observer"], KEYS_BY_NAME["watch-node"].public,
                    node=Node("127.0.0.1:7302", "http://127.0.0.1:7402")),
        Member.make("shop", ["depositor"], KEYS_BY_NAME["shop"].public),
    ]
    genesis = build_genesis("cfg-test", members, created_at="2025-01-01T00:00:00Z")
    (tmp_path / "genesis.json").write_text(genesis.to_json(), encoding="utf-8")
    folder = tmp_path / "court-node"
    folder.mkdir()
    write_key_file(folder / "node.key", "court-node", KEYS_BY_NAME["court-node"])
    (folder / "node.toml").write_text(VALID)
    return folder / "node.toml"


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def expect_error(path: Path, field: str, *fragments: str, loader=load_node) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loader(path)
    exc = info.value
    assert exc.field == field, (exc.field, str(exc))
    message = str(exc)
    assert message.startswith(str(path)), message
    assert field in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return exc


# --------------------------------------------------------------------------- the valid file


def test_a_valid_file_loads_with_defaults_and_absolute_paths(consortium, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # relative paths are taken from the file's folder, not the cwd
    setup = load_node(consortium)
    c = setup.config
    folder = consortium.parent
    assert c.path == consortium
    assert c.name == "court-node"
    assert c.genesis == tmp_path / "genesis.json"
    assert c.key == folder / "node.key"
    assert c.data_dir == folder / "data" and c.chain_dir == folder / "data" / "chain"
    assert all(p.is_absolute() for p in (c.path, c.genesis, c.key, c.data_dir))
    assert c.api.listen == Address("127.0.0.1", 7401) and str(c.api.listen) == "127.0.0.1:7401"
    assert c.peer.listen == Address("127.0.0.1", 7301)
    assert c.api.public_rate_per_s == 50.0 and isinstance(c.api.public_rate_per_s, float)
    assert c.api.max_body_bytes == 8 * 1024 * 1024
    assert (c.pool.max_pending, c.pool.per_client_pending, c.pool.replay_capacity) == (200_000, 50_000, 2_000_000)
    assert (c.log.level, c.log.json) == ("info", False)
    assert setup.genesis.chain_id == "cfg-test"
    assert setup.member.name == "court-node" and setup.member.roles == ("validator",)
    assert setup.key.public == KEYS_BY_NAME["court-node"].public


def test_every_key_can_be_set(consortium):
    edit(consortium, '[api]\nlisten = "127.0.0.1:7401"', '[api]\nlisten = "[::1]:7401"\npublic_rate_per_s = 2.5\n'
         'max_body_bytes = 1_048_576')
    consortium.write_text(consortium.read_text() + "\n[pool]\nmax_pending = 1000\nper_client_pending = 1000\n"
                          "replay_capacity = 5000\n\n[log]\nlevel = \"debug\"\njson = true\n")
    c = load_config(consortium)
    assert c.api.listen == Address("::1", 7401) and str(c.api.listen) == "[::1]:7401"
    assert (c.api.public_rate_per_s, c.api.max_body_bytes) == (2.5, 1_048_576)
    assert (c.pool.max_pending, c.pool.per_client_pending, c.pool.replay_capacity) == (1000, 1000, 5000)
    assert (c.log.level, c.log.json) == ("debug", True)


def test_an_observer_runs_a_node_too(consortium):
    folder = consortium.parent
    write_key_file(folder / "watch.key", "watch-node", KEYS_BY_NAME["watch-node"])
    edit(consortium, 'name = "court-node"', 'name = "watch-node"')
    edit(consortium, 'key = "node.key"', 'key = "watch.key"')
    assert load_node(consortium).member.roles == ("observer",)


def test_the_configuration_is_frozen(consortium):
    c = load_config(consortium)
    assert isinstance(c, NodeConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.api.max_body_bytes = 1  # type: ignore[misc]


def test_config_error_is_an_input_error():
    assert issubclass(ConfigError, InputError) and ConfigError.reason == "bad_config"


# --------------------------------------------------------------------------- bad files: (edit, field, message fragments)

BAD = {
    "unknown section": ('[peer]', '[peeer]\nlisten = "1.2.3.4:1"\n\n[peer]', "[peeer]",
                        ["unknown section", "api, log, node, peer, pool"]),
    "unknown key": ('listen = "127.0.0.1:7401"', 'listen = "127.0.0.1:7401"\nlisen = 1', "api.lisen",
                    ["unknown key", "listen, max_body_bytes, public_rate_per_s"]),
    "top-level key": ("[node]", 'name = "x"\n[node]', "name", ["[node]"]),
    "missing section": ('[peer]\nlisten = "127.0.0.1:7301"', "", "[peer]", ["missing required section", "listen"]),
    "missing key": ('key = "node.key"\n', "", "node.key", ["missing required key"]),
    "section not a table": ('[peer]\nlisten = "127.0.0.1:7301"', '[[peer]]\nlisten = "127.0.0.1:7301"', "peer",
                            ["expected a table", "array"]),
    "int as string": ('[api]', '[api]\nmax_body_bytes = "8MiB"', "api.max_body_bytes",
                      ["expected an integer", "string"]),
    "int as float": ('[peer]', '[pool]\nmax_pending = 1.5\n\n[peer]', "pool.max_pending", ["expected an integer"]),
    "int as bool": ('[peer]', '[pool]\nreplay_capacity = true\n\n[peer]', "pool.replay_capacity",
                    ["expected an integer", "boolean"]),
    "number as bool": ('[api]', '[api]\npublic_rate_per_s = true', "api.public_rate_per_s", ["expected a number"]),
    "number as nan": ('[api]', '[api]\npublic_rate_per_s = nan', "api.public_rate_per_s", ["expected a number"]),
    "bool as string": ('[peer]', '[log]\njson = "yes"\n\n[peer]', "log.json", ["true or false"]),
    "name as integer": ('name = "court-node"', "name = 5", "node.name", ["expected a string", "integer"]),
    "bad name": ('name = "court-node"', 'name = "Court_Node"', "node.name", ["not a valid name"]),
    "path as table": ('data_dir = "data"', "data_dir = {x = 1}", "node.data_dir", ["expected a path", "table"]),
    "empty path": ('data_dir = "data"', 'data_dir = ""', "node.data_dir", ["non-empty"]),
    "level unknown": ('[peer]', '[log]\nlevel = "verbose"\n\n[peer]', "log.level",
                      ["verbose", "debug, info, warning, error"]),
    "too small": ('[api]', '[api]\nmax_body_bytes = 10', "api.max_body_bytes", ["outside the allowed range"]),
    "too large": ('[peer]', '[pool]\nmax_pending = 100_000_001\n\n[peer]', "pool.max_pending",
                  ["outside the allowed range"]),
    "rate zero": ('[api]', '[api]\npublic_rate_per_s = 0', "api.public_rate_per_s", ["outside the allowed range"]),
    "per client above total": ('[peer]', '[pool]\nmax_pending = 10\nper_client_pending = 11\n\n[peer]',
                               "pool.per_client_pending", ["more than pool.max_pending"]),
    "address without port": ('listen = "127.0.0.1:7401"', 'listen = "127.0.0.1"', "api.listen", ["host:port"]),
    "address with scheme": ('listen = "127.0.0.1:7401"', 'listen = "http://127.0.0.1:7401"', "api.listen",
                            ["host:port"]),
    "port out of range": ('listen = "127.0.0.1:7301"', 'listen = "127.0.0.1:99999"', "peer.listen", ["1-65535"]),
    "port zero": ('listen = "127.0.0.1:7301"', 'listen = "127.0.0.1:0"', "peer.listen", ["1-65535"]),
    "bad ipv6": ('listen = "127.0.0.1:7301"', 'listen = "[1::2::3]:7301"', "peer.listen", ["IPv6"]),
    "address as integer": ('listen = "127.0.0.1:7301"', "listen = 7301", "peer.listen", ["expected a string"]),
    "api and peer on one port": ('listen = "127.0.0.1:7301"', 'listen = "127.0.0.1:7401"', "peer.listen",
                                 ["must differ"]),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=lambda c: c.replace(" ", "-"))
def test_each_bad_value_is_refused_naming_its_key(consortium, case):
    old, new, field, fragments = BAD[case]
    edit(consortium, old, new)
    expect_error(consortium, field, *fragments)


def test_invalid_toml_is_refused_with_the_position(consortium):
    consortium.write_text(VALID + "\nthis is not toml\n")
    with pytest.raises(ConfigError) as info:
        load_config(consortium)
    assert info.value.reason == "invalid_toml"
    assert str(info.value).startswith(str(consortium)) and "line" in str(info.value)


def test_a_missing_configuration_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_node(tmp_path / "nope.toml")
    assert "does not exist" in str(info.value) and info.value.reason == "not_found"


def test_a_non_utf8_file(consortium):
    consortium.write_bytes(VALID.encode() + b"\n# \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(consortium)


def test_an_oversized_file(consortium):
    consortium.write_text(VALID + "#" * (config_module.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="limit"):
        load_config(consortium)


# --------------------------------------------------------------------------- files that do not fit together


def test_missing_genesis_file(consortium):
    (consortium.parent.parent / "genesis.json").unlink()
    expect_error(consortium, "node.genesis", "does not exist", loader=load_config)


def test_missing_key_file(consortium):
    (consortium.parent / "node.key").unlink()
    expect_error(consortium, "node.key", "does not exist", loader=load_config)


def test_data_dir_that_is_a_file(consortium):
    (consortium.parent / "data").write_text("not a folder")
    expect_error(consortium, "node.data_dir", "not a folder")


def test_invalid_genesis(consortium):
    path = consortium.parent.parent / "genesis.json"
    path.write_text(path.read_text().replace('"chain_id": "cfg-test"', '"chain_id": "Bad Id"'))
    expect_error(consortium, "node.genesis", "chain_id")


def test_key_of_another_member(consortium):
    folder = consortium.parent
    os.unlink(folder / "node.key")
    write_key_file(folder / "node.key", "watch-node", KEYS_BY_NAME["watch-node"])
    exc = expect_error(consortium, "node.key", "belongs to member 'watch-node'", "court-node")
    assert exc.reason == "wrong_key"


def test_key_named_right_but_not_the_genesis_key(consortium):
    folder = consortium.parent
    os.unlink(folder / "node.key")
    write_key_file(folder / "node.key", "court-node", SecretKey(bytes([9]) * 32))
    expect_error(consortium, "node.key", "public key", KEYS_BY_NAME["court-node"].public.fingerprint())


def test_key_with_unsafe_permissions(consortium):
    os.chmod(consortium.parent / "node.key", 0o644)
    exc = expect_error(consortium, "node.key", "644", "chmod 600")
    assert exc.reason == "unsafe_permissions"


def test_node_not_in_genesis(consortium):
    edit(consortium, 'name = "court-node"', 'name = "ghost-node"')
    exc = expect_error(consortium, "node.name", "no member 'ghost-node'", "court-node, watch-node")
    assert exc.reason == "unknown_member"


def test_client_member_used_as_node(consortium):
    folder = consortium.parent
    write_key_file(folder / "shop.key", "shop", KEYS_BY_NAME["shop"])
    edit(consortium, 'name = "court-node"', 'name = "shop"')
    edit(consortium, 'key = "node.key"', 'key = "shop.key"')
    exc = expect_error(consortium, "node.name", "client", "depositor", "not a validator or observer")
    assert exc.reason == "not_a_node"


# --------------------------------------------------------------------------- the documentation agrees with the table


def test_the_example_sets_every_key_to_its_default():
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = parse_config(doc, EXAMPLE.parent)  # pure: the example's key file does not exist
    assert config.genesis == EXAMPLE.parent / "genesis.example.json"
    for s in KEYS:
        assert s.name in doc[s.section], "%s missing from %s" % (s.path, EXAMPLE.name)
        if not s.required:
            assert doc[s.section][s.name] == s.default, s.path


def _shown(default) -> str:
    if isinstance(default, str):
        return '"%s"' % default
    if isinstance(default, list):
        return "[%s]" % ", ".join(default)
    return "8 MiB (8,388,608)" if default == 8 * 1024 * 1024 else "{:,}".format(default)


def test_the_module_docstring_documents_every_key_and_default():
    text = config_module.__doc__
    for s in KEYS:
        assert "[%s]" % s.section in text
        assert re.search(r"^\s+%s\*?\s" % re.escape(s.name), text, re.M), s.path
        if not s.required and not isinstance(s.default, bool):  # booleans: "default false"
            assert re.search(r"%s.*\n?.*default %s" % (s.name, re.escape(_shown(s.default))), text), s.path


def test_the_example_genesis_validators_load_with_a_real_key(tmp_path):
    """The example config names a member of the example genesis: only the key is missing."""
    text = EXAMPLE.read_text(encoding="utf-8").replace('genesis = "genesis.example.json"',
                                                       'genesis = "%s"' % (EXAMPLE.parent / "genesis.example.json"))
    (tmp_path / "node.toml").write_text(text, encoding="utf-8")
    write_key_file(tmp_path / "court-node.key", "court-node", SecretKey.generate())
    # The right member, but not its (discarded) example key: refused as the wrong key.
    expect_error(tmp_path / "node.toml", "node.key", "public key")


def test_trusted_proxies_are_ip_addresses(consortium):
    edit(consortium, "[api]\n", '[api]\ntrusted_proxies = ["127.0.0.1", "::1", "10.0.0.5"]\n')
    assert load_node(consortium).config.api.trusted_proxies == frozenset({"127.0.0.1", "::1", "10.0.0.5"})
    edit(consortium, '"10.0.0.5"', '"proxy.example"')
    expect_error(consortium, "api.trusted_proxies[2]", "not an IP address")
    edit(consortium, '["127.0.0.1", "::1", "proxy.example"]', '"127.0.0.1"')
    expect_error(consortium, "api.trusted_proxies", "expected a list")
