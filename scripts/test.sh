#!/usr/bin/env bash
# Install pixseek with its test tools, lint, and run the whole test suite (offline, CPU).
# PostgreSQL tests use postgresql://postgres@127.0.0.1:5432 (override: PIXSEEK_TEST_POSTGRES);
# with CI set they fail instead of skipping when the server is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/install.sh
.venv/bin/ruff check pixseek tests bench
.venv/bin/ruff format --check pixseek tests bench
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest "$@"
