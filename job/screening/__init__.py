"""Stage 2, screening: the rules that flag a transaction, each written once, and the history they look back on."""
