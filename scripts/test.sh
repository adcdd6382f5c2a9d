#!/usr/bin/env bash
# Install pixseek with its test tools (and Chromium for the browser test), lint, and run the whole
# test suite (offline, CPU).
# PostgreSQL tests use postgresql://postgres@127.0.0.1:5432 (override: PIXSEEK_TEST_POSTGRES);
# with CI set they fail instead of skipping when the server is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/install.sh
# The browser test drives Debian's Chromium through Playwright (never `playwright install`, which
# downloads a browser). Installed here when missing and we may; otherwise that test skips (fails in CI).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "test.sh: could not install chromium; the browser test will skip" >&2
fi
.venv/bin/ruff check pixseek tests bench
.venv/bin/ruff format --check pixseek tests bench
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest "$@"
