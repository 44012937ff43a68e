#!/usr/bin/env bash
# Serve the API and the pages with gunicorn (port 5020 by default).
#   scripts/api.sh [--host H] [--port P] [--workers N] [--threads N] [--config FILE]
# Every other setting comes from CLIPSEARCH_* environment variables or the config file.
set -euo pipefail
cd "$(dirname "$0")/.."
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) export CLIPSEARCH_HOST="$2"; shift 2 ;;
    --port) export CLIPSEARCH_PORT="$2"; shift 2 ;;
    --workers) export CLIPSEARCH_WORKERS="$2"; shift 2 ;;
    --threads) export CLIPSEARCH_THREADS="$2"; shift 2 ;;
    --config) export CLIPSEARCH_CONFIG="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "api.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/gunicorn --config api/gunicorn_conf.py "api:create_app()"
