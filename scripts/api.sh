#!/usr/bin/env bash
# Serve the API and the pages (port 5020 by default): nginx in front, gunicorn behind it on a private socket.
#   scripts/api.sh [--host H] [--port P] [--workers N] [--threads N] [--proxy auto|nginx|none] [--config FILE]
# Every other setting (api_key, limits, client_timeout, ...) comes from CLIPSEARCH_* variables or the config file.
# nginx buffers each request before gunicorn sees it, so slow clients cannot tie up gunicorn's threads. Without
# nginx: on loopback a warning and gunicorn alone; on any other address a refusal (unless --proxy none).
set -euo pipefail
cd "$(dirname "$0")/.."
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) export CLIPSEARCH_HOST="$2"; shift 2 ;;
    --port) export CLIPSEARCH_PORT="$2"; shift 2 ;;
    --workers) export CLIPSEARCH_WORKERS="$2"; shift 2 ;;
    --threads) export CLIPSEARCH_THREADS="$2"; shift 2 ;;
    --proxy) export CLIPSEARCH_PROXY="$2"; shift 2 ;;
    --config) export CLIPSEARCH_CONFIG="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "api.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
export TOKENIZERS_PARALLELISM=false
# glibc makes up to 8 arenas per core for a threaded process and keeps what they free; two are enough
# here and keep a worker's memory near its baseline (docs/benchmarks.md). It must be set before Python starts.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

run=$(mktemp -d "${TMPDIR:-/tmp}/clipsearch-api.XXXXXX")
pids=()
stop() {
  trap - EXIT INT TERM
  if [[ ${#pids[@]} -gt 0 ]]; then kill -TERM "${pids[@]}" 2>/dev/null; fi
  wait 2>/dev/null
  rm -rf "$run"
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Prometheus multiprocess mode: every worker writes its counts here; emptied at every start.
export PROMETHEUS_MULTIPROC_DIR="$run/metrics"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

plan=$(.venv/bin/python -m api.launch "$run") || exit $?
eval "$plan"
gunicorn=(.venv/bin/gunicorn --config api/gunicorn_conf.py)
if [[ $PROXY == nginx ]]; then
  "$NGINX" -t -q -e stderr -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf"
  "${gunicorn[@]}" --bind "unix:$GUNICORN_SOCKET" --forwarded-allow-ips '*' "api:create_app()" &
  pids+=($!)
  "$NGINX" -e stderr -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" &
  pids+=($!)
else
  "${gunicorn[@]}" "api:create_app()" &
  pids+=($!)
fi
set +e
wait -n "${pids[@]}"  # when either stops, the service stops
exit $?
