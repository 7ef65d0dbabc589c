"""Sans-I/O PBFT consensus (see docs/consensus.md)."""
