#!/usr/bin/env bash
# One command for the tests: system packages (RTSP server, brokers, Chromium), .venv with the
# test tools, lint, type check, then the whole suite against real Triton, brokers and browser.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-system-deps.sh
bash scripts/setup.sh --test
.venv/bin/ruff check streamer trackers tests studies
.venv/bin/mypy
exec .venv/bin/pytest "$@"
