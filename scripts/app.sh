#!/usr/bin/env bash
# Set everything up, then start the Streamlit lab on 127.0.0.1 (pass more streamlit flags after).
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMLIT_BROWSER_GATHER_USAGE_STATS=false GRADIO_ANALYTICS_ENABLED=False
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run streamlit_app.py --server.address 127.0.0.1 \
    --server.headless true "$@"
