#!/usr/bin/env bash
# Install Debian's etcd (package etcd-server, 3.4.x) for the local Kubernetes control plane when it
# is missing. Idempotent; needs root (CI and dev machines run as root) and Debian's apt.
# The package's own etcd service is not used: `rdg k8s up` runs etcd itself on loopback ports.
set -euo pipefail
ETCD="${1:-/usr/bin/etcd}"
if [[ -x "$ETCD" ]]; then
  echo "etcd present: $ETCD"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "etcd missing at $ETCD and apt-get is unavailable; install etcd 3.4+ by other means" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's etcd-server with apt-get (one time)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
"$ETCD" --version | head -1
