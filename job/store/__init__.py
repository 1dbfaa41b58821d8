"""Stage 6, the store: the SQLite audit database, its migrations, the hash-chained event log and its witnesses."""
