"""Sans-I/O PBFT replica (Castro & Liskov, OSDI'99 / TOCS'02) for the evidence ledger.

Entry point: :class:`consensus.replica.Replica`.  See ``docs/consensus.md``.
"""
