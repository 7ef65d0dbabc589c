"""Known-answer vectors and argument strictness of ledger.merkle.

* ``tests/vectors/merkle/*.json`` are written by ``tools/gen_merkle_vectors.py``
  from its own RFC 9162 transcription; each names its mutation and its verdict.
* The RFC 6962 roots and proofs below are the public certificate-transparency /
  transparency-dev reference test data for the eight standard leaves.
* Every verifier argument is probed with wrong types and lengths.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from ledger import merkle
from ledger.errors import CorruptionError, InputError, ProofError

REPO = Path(__file__).resolve().parents[2]
VECTOR_DIR = REPO / "tests" / "vectors" / "merkle"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.json"))


def _h(hexes):
    return [bytes.fromhex(x) for x in hexes]


# ------------------------------------------------------------------ vector files


def test_vector_set_is_present_and_modest():
    names = {p.stem for p in VECTOR_FILES}
    assert 100 <= len(names) <= 160
    assert "inclusion-7-of-13-modified-proof@0-bit@4" in names
    assert "consistency-6-to-8-happy-path" in names
    assert "roots-rfc6962-leaves" in names


def test_vectors_are_what_the_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_merkle_vectors", REPO / "tools" / "gen_merkle_vectors.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(["--out", str(VECTOR_DIR), "--check"]) == 0


def _check_inclusion(v):
    leaf, proof, root = bytes.fromhex(v["leaf_hash"]), _h(v["proof"]), bytes.fromhex(v["root"])
    index, size = v["leaf_index"], v["tree_size"]
    if not v["valid"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, proof, root)
        return
    assert merkle.verify_inclusion(leaf, index, size, proof, root) is None
    assert merkle.root_from_inclusion_proof(leaf, index, size, proof) == root
    if "leaf_data" in v:
        hashes = [merkle.leaf_hash(d) for d in _h(v["leaf_data"])]
        assert hashes[index] == leaf
        assert merkle.root(hashes) == root
        assert merkle.inclusion_proof(index, hashes) == proof
        assert merkle.inclusion_proof_from_nodes(index, size, merkle.MemoryNodes(hashes).get) == proof


def _check_consistency(v):
    r1, r2, proof = bytes.fromhex(v["root1"]), bytes.fromhex(v["root2"]), _h(v["proof"])
    size1, size2 = v["size1"], v["size2"]
    if not v["valid"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, r1, r2)
        return
    assert merkle.verify_consistency(size1, size2, proof, r1, r2) is None
    assert merkle.root_from_consistency_proof(size1, size2, proof, r1) == r2
    if "leaf_data" in v:
        hashes = [merkle.leaf_hash(d) for d in _h(v["leaf_data"])]
        assert merkle.root(hashes[:size1]) == r1 and merkle.root(hashes) == r2
        assert merkle.consistency_proof(size1, hashes) == proof
        assert merkle.consistency_proof_from_nodes(size1, size2, merkle.MemoryNodes(hashes).get) == proof


def _check_roots(v):
    hashes = [merkle.leaf_hash(d) for d in _h(v["leaf_data"])]
    nodes = merkle.MemoryNodes(hashes)
    for n, want in enumerate(_h(v["roots"])):
        assert merkle.root(hashes[:n]) == want
        assert merkle.root_from_nodes(n, nodes.get) == want


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_vector(path):
    v = json.loads(path.read_text())
    assert v["name"] == path.stem
    assert type(v["valid"]) is bool
    {"inclusion": _check_inclusion, "consistency": _check_consistency, "roots": _check_roots}[v["kind"]](v)


# ------------------------------------------------- RFC 6962 reference test data

RFC6962_LEAVES = _h(
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
)
RFC6962_ROOTS = _h(
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
)
RFC6962_HASHES = [merkle.leaf_hash(d) for d in RFC6962_LEAVES]

# (index, size, proof) and (size1, size2, proof) from the reference verifier tests.
KNOWN_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
KNOWN_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def test_rfc6962_hashes():
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.root([]) == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert merkle.leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    left, right = merkle.leaf_hash(b"N123"), merkle.leaf_hash(b"N456")
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_rfc6962_roots():
    nodes = merkle.MemoryNodes(RFC6962_HASHES)
    for n, want in enumerate(RFC6962_ROOTS, start=1):
        assert merkle.root(RFC6962_HASHES[:n]) == want, n
        assert merkle.root_from_nodes(n, nodes.get) == want, n


@pytest.mark.parametrize("index,size,proof", KNOWN_INCLUSION)
def test_rfc6962_inclusion_proofs(index, size, proof):
    proof = _h(proof)
    hashes = RFC6962_HASHES[:size]
    assert merkle.inclusion_proof(index, hashes) == proof
    assert merkle.inclusion_proof_from_nodes(index, size, merkle.MemoryNodes(RFC6962_HASHES).get) == proof
    assert merkle.verify_inclusion(hashes[index], index, size, proof, RFC6962_ROOTS[size - 1]) is None


@pytest.mark.parametrize("size1,size2,proof", KNOWN_CONSISTENCY)
def test_rfc6962_consistency_proofs(size1, size2, proof):
    proof = _h(proof)
    assert merkle.consistency_proof(size1, RFC6962_HASHES[:size2]) == proof
    assert merkle.consistency_proof_from_nodes(size1, size2, merkle.MemoryNodes(RFC6962_HASHES).get) == proof
    root1, root2 = RFC6962_ROOTS[size1 - 1], RFC6962_ROOTS[size2 - 1]
    assert merkle.verify_consistency(size1, size2, proof, root1, root2) is None


# ------------------------------------------------------------- argument strictness


class BytesSubclass(bytes):
    pass


class IntSubclass(int):
    pass


H32 = bytes(range(32))
BAD_HASHES = [
    None, 0, "", "0" * 64, H32.hex(), bytearray(H32), memoryview(H32), BytesSubclass(H32),
    b"", H32[:31], H32 + b"\x00", H32 * 2, [H32],
]
BAD_COUNTS = [None, True, False, 1.0, "1", b"\x01", -1, -(2**64), 2**64, 2**70, IntSubclass(1), [1]]
BAD_PROOFS = [None, H32, H32.hex(), bytearray(H32 * 2), {0: H32}, {H32}, iter([H32]), 0]

# Valid inclusion: leaf 5 of the 8 RFC leaves; valid consistency: 6 -> 8.
INC = dict(leaf_hash=RFC6962_HASHES[5], index=5, size=8, proof=_h(KNOWN_INCLUSION[2][2]), root=RFC6962_ROOTS[7])
CON = dict(size1=6, size2=8, proof=_h(KNOWN_CONSISTENCY[2][2]), root1=RFC6962_ROOTS[5], root2=RFC6962_ROOTS[7])


def _expect_proof_error(fn, kwargs, field):
    with pytest.raises(ProofError) as caught:
        fn(**kwargs)
    assert type(caught.value) is ProofError  # a format error, not a root mismatch
    assert caught.value.field == field
    assert field.split("[")[0] in str(caught.value)


def test_valid_baselines_accept_lists_and_tuples():
    assert merkle.verify_inclusion(**INC) is None
    assert merkle.verify_inclusion(**{**INC, "proof": tuple(INC["proof"])}) is None
    assert merkle.verify_consistency(**CON) is None
    assert merkle.verify_consistency(**{**CON, "proof": tuple(CON["proof"])}) is None


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
@pytest.mark.parametrize("name", ["leaf_hash", "root"])
def test_inclusion_rejects_bad_hash(name, bad):
    _expect_proof_error(merkle.verify_inclusion, {**INC, name: bad}, name)


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
@pytest.mark.parametrize("name", ["root1", "root2"])
def test_consistency_rejects_bad_hash(name, bad):
    _expect_proof_error(merkle.verify_consistency, {**CON, name: bad}, name)


@pytest.mark.parametrize("bad", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("name", ["index", "size"])
def test_inclusion_rejects_bad_count(name, bad):
    _expect_proof_error(merkle.verify_inclusion, {**INC, name: bad}, name)


@pytest.mark.parametrize("bad", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("name", ["size1", "size2"])
def test_consistency_rejects_bad_count(name, bad):
    _expect_proof_error(merkle.verify_consistency, {**CON, name: bad}, name)


@pytest.mark.parametrize("bad", BAD_PROOFS, ids=repr)
def test_verifiers_reject_bad_proof_container(bad):
    _expect_proof_error(merkle.verify_inclusion, {**INC, "proof": bad}, "proof")
    _expect_proof_error(merkle.verify_consistency, {**CON, "proof": bad}, "proof")


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_verifiers_reject_bad_proof_element(position, bad):
    for fn, kwargs in ((merkle.verify_inclusion, INC), (merkle.verify_consistency, CON)):
        proof = list(kwargs["proof"])
        proof[position] = bad
        _expect_proof_error(fn, {**kwargs, "proof": proof}, f"proof[{position}]")


@pytest.mark.parametrize(
    "kwargs,field,message",
    [
        ({**INC, "index": 8}, "index", "not below tree size"),
        ({**INC, "index": 0, "size": 0, "proof": []}, "size", "empty tree"),
        ({**INC, "proof": INC["proof"][:2]}, "proof", "wrong proof length"),
        ({**INC, "proof": INC["proof"] + [H32]}, "proof", "wrong proof length"),
    ],
)
def test_inclusion_shape_errors_name_the_problem(kwargs, field, message):
    with pytest.raises(ProofError, match=message) as caught:
        merkle.verify_inclusion(**kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "kwargs,field,message",
    [
        ({**CON, "size1": 0}, "size1", "consistency proof from empty tree is meaningless"),
        ({**CON, "size1": 0, "size2": 0, "proof": [], "root1": merkle.EMPTY_ROOT, "root2": merkle.EMPTY_ROOT},
         "size1", "consistency proof from empty tree is meaningless"),
        ({**CON, "size1": 9}, "size2", "smaller than size1"),
        ({**CON, "size1": 8}, "proof", "proof is not empty"),
        ({**CON, "proof": []}, "proof", "empty proof"),
        ({**CON, "proof": CON["proof"][:2]}, "proof", "wrong proof length"),
        ({**CON, "proof": CON["proof"] + [H32]}, "proof", "wrong proof length"),
    ],
)
def test_consistency_shape_errors_name_the_problem(kwargs, field, message):
    with pytest.raises(ProofError, match=message) as caught:
        merkle.verify_consistency(**kwargs)
    assert caught.value.field == field


def test_equal_sizes_need_equal_roots():
    r = RFC6962_ROOTS[2]
    assert merkle.verify_consistency(3, 3, [], r, r) is None
    with pytest.raises(merkle.RootMismatchError) as caught:
        merkle.verify_consistency(3, 3, [], r, RFC6962_ROOTS[3])
    assert caught.value.field == "root2"


def test_root_mismatch_carries_expected_and_calculated():
    wrong_root = RFC6962_ROOTS[6]
    with pytest.raises(merkle.RootMismatchError) as caught:
        merkle.verify_inclusion(**{**INC, "root": wrong_root})
    err = caught.value
    assert isinstance(err, ProofError) and isinstance(err, ValueError)
    assert err.expected == wrong_root and err.calculated == RFC6962_ROOTS[7]
    assert err.field == "root" and err.reason == "bad_proof"
    assert merkle.ProofError is ProofError


# ---------------------------------------------------------------- builder strictness


def test_builders_reject_bad_input():
    hashes = RFC6962_HASHES
    for bad in (None, H32, "abc", 5):
        with pytest.raises(InputError):
            merkle.root(bad)
    with pytest.raises(InputError) as caught:
        merkle.root(hashes[:3] + [H32[:31]] + hashes[4:])
    assert caught.value.field == "leaf_hashes[3]"
    for bad in ("data", bytearray(b"x"), None, 1):
        with pytest.raises(InputError):
            merkle.leaf_hash(bad)
    with pytest.raises(InputError):
        merkle.node_hash(H32, H32[:31])
    with pytest.raises(InputError):
        merkle.node_hash(bytearray(H32), H32)
    for index in (-1, 8, True, 1.0):
        with pytest.raises(InputError):
            merkle.inclusion_proof(index, hashes)
        with pytest.raises(InputError):
            merkle.plan_inclusion(index, 8)
    for size1 in (0, 9, -1, True):
        with pytest.raises(InputError):
            merkle.consistency_proof(size1, hashes)
        with pytest.raises(InputError):
            merkle.plan_consistency(size1, 8)
    with pytest.raises(InputError, match="meaningless"):
        merkle.consistency_proof_from_nodes(0, 0, merkle.MemoryNodes().get)
    with pytest.raises(InputError):
        merkle.new_nodes_for_append(-1, hashes, merkle.MemoryNodes().get)
    with pytest.raises(InputError):
        merkle.new_nodes_for_append(0, [b"short"], merkle.MemoryNodes().get)


def test_node_functions_refuse_corrupt_storage():
    nodes = merkle.MemoryNodes(RFC6962_HASHES[:7])
    for bad in (H32[:31], bytearray(H32), None, H32.hex()):
        def get(level, index, bad=bad):
            return bad
        with pytest.raises(CorruptionError):
            merkle.root_from_nodes(7, get)
        with pytest.raises(CorruptionError):
            merkle.inclusion_proof_from_nodes(0, 7, get)
        with pytest.raises(CorruptionError):
            merkle.new_nodes_for_append(7, [H32], get)
    with pytest.raises(KeyError):
        merkle.root_from_nodes(8, nodes.get)  # (3, 0) is not complete yet
    assert merkle.root_from_nodes(7, nodes.get) == RFC6962_ROOTS[6]
