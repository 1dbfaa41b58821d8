"""Stage 7, reports: what auditors take away from the audit database."""
