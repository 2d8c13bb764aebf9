#!/usr/bin/env bash
# Install Debian's Chromium for the browser test when it is missing (Playwright must never download
# a browser of its own). Idempotent; needs root (CI and dev machines run as root) and Debian's apt.
set -euo pipefail
CHROMIUM="${RDG_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
  echo "chromium present: $CHROMIUM"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium missing at $CHROMIUM and apt-get is unavailable" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
"$CHROMIUM" --version
