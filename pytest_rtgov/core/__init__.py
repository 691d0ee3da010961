"""The pure core: records, the metric catalogue and formatting, gates and the verdict,
the schemas of the run record and gates.toml (msgspec), statistics, canonical JSON,
Merkle proofs, keys, signed notes and checkpoints, DSSE, ledger leaves, provenance,
shards, the delta index and the experiment graph.

Values in, values out: no disk, no pytest, nothing of the package outside ``core/`` but
:mod:`pytest_rtgov.errors` (checked by import-linter, see docs/architecture.md).
"""
