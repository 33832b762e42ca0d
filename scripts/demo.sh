#!/usr/bin/env bash
# One command for the demo: set up .venv, get the demo weights, run four cameras through the
# embedded Triton server. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Weights come from $STREAMER_ASSETS (default: the nearest shared/ above configs/, e.g. ../shared
# beside the checkout) or are downloaded from their official release into ~/.cache/streamer;
# nothing is downloaded when they are already there. The prepared model repository goes beside
# the config (configs/model_repository/).
.venv/bin/streamer models fetch --config configs/demo.yaml
exec .venv/bin/streamer run configs/demo.yaml
