#!/usr/bin/env bash
# Install pixseek with its test tools (and Chromium for the browser test), lint, type-check, and run
# the tests (offline, CPU):
#   bash scripts/test.sh            the everyday run: tests marked slow (kill -9 and subprocess runs,
#                                   Ray, training, the browser) are left out
#   bash scripts/test.sh --all      everything, as CI runs it (CI=true also selects everything)
# Further arguments go to pytest (e.g. -k watch, -x).
# PostgreSQL tests use postgresql://postgres@127.0.0.1:5432 (override: PIXSEEK_TEST_POSTGRES);
# with CI set they fail instead of skipping when the server is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
selection=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
    selection=()
    shift
elif [ -n "${CI:-}" ]; then
    selection=()
fi
EXTRAS=dev bash scripts/install.sh
# Tesseract's language data and the corpus fonts for the OCR tests (Debian packages; a no-op when
# present). Without them the OCR tests skip, or fail in CI.
bash scripts/install-ocr-data.sh || echo "test.sh: OCR data missing; the OCR tests will fail" >&2
# The browser test drives Debian's Chromium through Playwright (never `playwright install`, which
# downloads a browser). Installed here when missing and we may; otherwise that test skips (fails in CI).
if [ ${#selection[@]} -eq 0 ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "test.sh: could not install chromium; the browser test will skip" >&2
fi
.venv/bin/ruff check pixseek tests bench
.venv/bin/ruff format --check pixseek tests bench
.venv/bin/mypy  # the package, as configured in pyproject.toml: zero errors or CI fails
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest "${selection[@]}" "$@"
