"""Stage 5, mail: building, sending, fetching and reading email; who sent it and what is new in it."""
