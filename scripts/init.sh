#!/usr/bin/env bash
# Create the workspace folders. Safe to run any number of times: it never deletes or overwrites.
set -euo pipefail
workspace=${CLIPSEARCH_WORKSPACE:-$(cd "$(dirname "$0")/.." && pwd)}
for dir in data indexes indexes_text cache logs; do
  mkdir -p "$workspace/$dir"
done
echo "workspace ready: $workspace (data/ indexes/ indexes_text/ cache/ logs/)"
