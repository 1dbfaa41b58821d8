#!/usr/bin/env bash
# Install what the test suite needs (Dovecot for the real IMAP server, the package with its
# test extras), check job/ with ruff (lint, then format) and mypy (types), and run the whole
# suite with line coverage of job/ (files not fully covered are listed), failing below 94% for
# the whole suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dovecot >/dev/null 2>&1 || ! command -v doveadm >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing Dovecot (IMAP + LMTP) for the mail tests..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        dovecot-imapd dovecot-lmtpd openssl >/dev/null
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"

echo "ruff check job"
"$PYTHON" -m ruff check job
echo "ruff format --check job"
"$PYTHON" -m ruff format --check job
echo "mypy job"
"$PYTHON" -m mypy job

# The whole suite must keep line coverage at least where it is (96.4% when first measured; 94.4% since the
# export readers and the seal checks came in with their error branches partly covered);
# a run of a few tests (extra arguments) only reports it.
FAIL_UNDER=""
if [ "$#" -eq 0 ]; then FAIL_UNDER="--cov-fail-under=94"; fi
exec "$PYTHON" -m pytest --cov=job --cov-report=term:skip-covered $FAIL_UNDER "$@"
