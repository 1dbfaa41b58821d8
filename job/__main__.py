"""`python -m job` runs the `audit` command line."""

from job.cli import main

main()
