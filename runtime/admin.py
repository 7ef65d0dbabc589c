"""``evledger key`` and ``evledger genesis``: what an institution and a coordinator need
to set up a consortium across machines (docs/operations.md).

An institution generates its keys on its own machine (``key generate``: the secret
file is written with mode 0600 and never leaves that machine) and sends only the
public key (``key show``) to the coordinator.  The coordinator writes
``genesis.json`` with every member's public key and node addresses and checks it
(``genesis check``, which every institution runs too and compares the fingerprint
out of band before starting its node).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.crypto import SecretKey, load_key_file, write_key_file
from ledger.genesis import Genesis, load_genesis


def key_doc(name: str, key: SecretKey, path: Path) -> dict[str, Any]:
    public = key.public
    return {"name": name, "public_key": public.hex, "fingerprint": public.fingerprint(), "path": str(path)}


def generate_key(path: str | Path, name: str) -> dict[str, Any]:
    """Write a fresh Ed25519 key for member ``name`` to ``path`` (0600; never overwrites).

    Raises ``ValueError`` for a bad member name, ``FileExistsError`` if ``path`` exists.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError("folder %s does not exist" % path.parent)
    key = SecretKey.generate()
    write_key_file(path, name, key)
    return key_doc(name, key, path)


def show_key(path: str | Path) -> dict[str, Any]:
    """Name, public key and fingerprint of a key file (``KeyFileError`` if unreadable or unsafe)."""
    loaded = load_key_file(path)
    return key_doc(loaded.name, loaded.key, Path(path))


def genesis_doc(path: str | Path) -> dict[str, Any]:
    """Load and check a genesis file (``GenesisError`` naming the field) and summarise it."""
    genesis: Genesis = load_genesis(path)
    validators = genesis.validator_set()
    return {
        "chain_id": genesis.chain_id,
        "fingerprint": genesis.fingerprint(),
        "validators": len(validators.names),
        "faults_tolerated": validators.f,
        "quorum": validators.quorum,
        "members": [{"name": m.name, "roles": list(m.roles), "public_key": m.public_key.hex,
                     "peer": m.node.peer if m.node else None, "api": m.node.api if m.node else None}
                    for m in genesis.members],
        "consensus": genesis.consensus.to_doc(),
    }
