"""Stage 3, review: the AG2 finance agent that writes a note on each flagged item (offline reviewer or a model)."""
