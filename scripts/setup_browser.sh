#!/usr/bin/env bash
# The browser the page tests drive: Debian's Chromium (Playwright's own browser download cannot
# work offline). Installs it with apt-get when it is missing; needs root, as on CI and dev machines.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup_browser.sh: chromium is missing; install it with: sudo apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
