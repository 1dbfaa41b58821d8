"""Stage 1, the ledger: exports read into the engine's frame, money parsed exactly."""
