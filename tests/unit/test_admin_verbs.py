"""``evledger key generate|show`` and ``evledger genesis check``: setting up across machines."""

from __future__ import annotations

import json
import os
import stat

import pytest

import cli
from ledger.crypto import load_key_file
from ledger.genesis import Member, Node, build_genesis


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_key_generate_writes_a_private_file_and_prints_only_the_public_key(tmp_path, capsys):
    path = tmp_path / "court.key"
    code, out, err = run(capsys, "key", "generate", "--name", "court", "--out", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    loaded = load_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert doc["name"] == loaded.name == "court"
    assert doc["public_key"] == loaded.key.public.hex and loaded.key.seed_hex() not in out
    code, shown, _ = run(capsys, "key", "show", str(path), "--json")
    assert code == 0 and json.loads(shown)["public_key"] == doc["public_key"]
    code, text, _ = run(capsys, "key", "show", str(path))
    assert code == 0 and doc["public_key"] in text and loaded.key.seed_hex() not in text


def test_key_generate_refuses_to_overwrite_a_bad_name_and_a_missing_folder(tmp_path, capsys):
    path = tmp_path / "court.key"
    assert run(capsys, "key", "generate", "--name", "court", "--out", str(path))[0] == 0
    before = path.read_bytes()
    code, _, err = run(capsys, "key", "generate", "--name", "court", "--out", str(path))
    assert code == 2 and "refusing to overwrite" in err and path.read_bytes() == before
    code, _, err = run(capsys, "key", "generate", "--name", "Court!", "--out", str(tmp_path / "x.key"))
    assert code == 2 and "member names" in err and not (tmp_path / "x.key").exists()
    code, _, err = run(capsys, "key", "generate", "--name", "court", "--out", str(tmp_path / "no" / "x.key"))
    assert code == 2 and "does not exist" in err


def test_key_show_refuses_a_key_file_others_can_read(tmp_path, capsys):
    path = tmp_path / "court.key"
    run(capsys, "key", "generate", "--name", "court", "--out", str(path))
    os.chmod(path, 0o644)
    code, out, err = run(capsys, "key", "show", str(path))
    assert code == 2 and out == "" and "court.key" in err


def _genesis_file(tmp_path, capsys):
    keys = {}
    for name in ("v1", "v2", "v3", "v4", "shop"):
        code, out, _ = run(capsys, "key", "generate", "--name", name, "--out", str(tmp_path / (name + ".key")),
                           "--json")
        keys[name] = json.loads(out)["public_key"]
    members = [Member.make(n, ["validator"], keys[n], node=Node("10.0.0.%d:7301" % i, "http://10.0.0.%d:7401" % i))
               for i, n in enumerate(("v1", "v2", "v3", "v4"), 1)]
    members.append(Member.make("shop", ["depositor"], keys["shop"]))
    genesis = build_genesis("across-machines", members, created_at="2026-11-28T00:00:00Z")
    path = tmp_path / "genesis.json"
    path.write_text(genesis.to_json(), encoding="utf-8")
    return path, genesis


def test_genesis_check_prints_the_fingerprint_every_node_computes(tmp_path, capsys):
    path, genesis = _genesis_file(tmp_path, capsys)
    code, out, err = run(capsys, "genesis", "check", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["fingerprint"] == genesis.fingerprint() and doc["chain_id"] == "across-machines"
    assert (doc["validators"], doc["faults_tolerated"], doc["quorum"]) == (4, 1, 3)
    assert [m["name"] for m in doc["members"] if m["peer"]] == ["v1", "v2", "v3", "v4"]
    code, text, _ = run(capsys, "genesis", "check", str(path))
    assert code == 0 and genesis.fingerprint() in text and "tolerates 1 faulty" in text


def test_genesis_check_names_the_bad_field_and_exits_2(tmp_path, capsys):
    path, _ = _genesis_file(tmp_path, capsys)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["members"][0]["public_key"] = "00" * 31
    path.write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run(capsys, "genesis", "check", str(path))
    assert code == 2 and out == "" and "members" in err
    code, _, err = run(capsys, "genesis", "check", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err


@pytest.mark.parametrize("argv", [["key", "--help"], ["key", "generate", "--help"], ["key", "show", "--help"],
                                  ["genesis", "--help"], ["genesis", "check", "--help"]])
def test_every_admin_verb_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


def test_key_show_refuses_a_malformed_key_file(tmp_path, capsys):
    path = tmp_path / "garbage.key"
    path.write_text("not a key file\n")
    os.chmod(path, 0o600)
    code, out, err = run(capsys, "key", "show", str(path))
    assert code == 2 and out == "" and "garbage.key" in err
    code, _, err = run(capsys, "key", "show", str(tmp_path / "missing.key"))
    assert code == 2 and "does not exist" in err
