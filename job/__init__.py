"""Nightly ledger audit with email approvals.

The pipeline, one module per stage: ingest → screen → agent (review) → request → poll →
decide → report, with `run` tying the nightly stages together, `outbox`/`transport` at the
mail edge and `db` at the storage edge.
"""

__version__ = "0.1.0"
