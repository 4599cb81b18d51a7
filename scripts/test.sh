#!/usr/bin/env bash
# Set everything up, then run the default test suite (slow tests excluded: add `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
