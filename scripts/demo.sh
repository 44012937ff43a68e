#!/usr/bin/env bash
# The main job on the embedded demo model: workspace, demo dataset, indexes, then the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
scripts/init.sh
if [[ ! -f data/demo/.generated ]]; then
  "$py" -m lib.synthetic data/demo --seed 0 --per-class 50 --val-per-class 10
fi
"$py" -m lib.evaluate --model demo --per-class 10
