#!/usr/bin/env bash
# The main job on the embedded demo model: workspace, demo dataset (generated once), image and text
# indexes (incremental: a second run encodes nothing), then the API and pages on port 5020.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
scripts/init.sh
if [[ ! -f data/demo/.generated ]]; then
  "$py" -m lib.data.synthetic data/demo --seed 0 --per-class 50 --val-per-class 10
fi
"$py" build_image_index.py demo data/demo
"$py" build_text_index.py demo data/demo/words.txt
echo "serving the API and the pages on http://${CLIPSEARCH_HOST:-127.0.0.1}:${CLIPSEARCH_PORT:-5020}/ (Ctrl-C stops)"
exec scripts/api.sh "$@"
