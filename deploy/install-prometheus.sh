#!/usr/bin/env bash
# Prometheus and promtool for the local stack (Debian 12: prometheus 2.42) without Debian's service: the stack
# runs its own prometheus under var/prometheus on its own port (`hisbridge stack up`). The package's unit is
# disabled and stopped when a service manager started it, so no second Prometheus holds 9090 or
# /var/lib/prometheus. Recommends (node exporter…) are not installed. A no-op when both binaries are there.
# Used by `make prometheus` (`make up`, `make test`).
set -euo pipefail
prometheus=${HISBRIDGE_PROMETHEUS:-/usr/bin/prometheus}
promtool=$(dirname "$prometheus")/promtool
have() { [ -x "$prometheus" ] && [ -x "$promtool" ]; }
if have; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "Prometheus is not installed: as root run $0 (apt-get install prometheus)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -q -o DPkg::Lock::Timeout=300 update
apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends prometheus
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
have || { echo "Prometheus still incomplete after installing (looked for $prometheus and $promtool)" >&2; exit 1; }
