#!/usr/bin/env bash
# nginx, which scripts/api.sh puts in front of gunicorn (it buffers slow clients and answers its own limits
# as JSON). Installs Debian's nginx-light with apt-get when nginx is missing; needs root, as on CI.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup_nginx.sh: nginx is missing; install it with: sudo apt-get install -y nginx-light" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# The package would start a system-wide nginx on port 80 where an init system runs; api.sh runs its own.
apt-get install -y -q --no-install-recommends nginx-light
