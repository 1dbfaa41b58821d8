"""`python -m job` runs the `audit` command line."""

from .cli import main

main()
