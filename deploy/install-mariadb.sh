#!/usr/bin/env bash
# MariaDB server binaries for the local stack's `mariadb-his` (Debian 12: MariaDB 10.11), without Debian's
# service: mariadb-server-core has no maintainer scripts (nothing is started, enabled or initialised under
# /var/lib/mysql); the stack runs its own mariadbd under var/. Creates the `mysql` system user mariadbd runs
# as when started by root. A no-op when everything is there. Used by `make mariadb` (`make up`, `make test`).
set -euo pipefail
mariadbd=${HISBRIDGE_MARIADBD:-/usr/sbin/mariadbd}
bin=$(dirname "$(dirname "$mariadbd")")/bin
have() { [ -x "$mariadbd" ] || return 1; for t in mariadb mariadb-admin mariadb-install-db mariadb-tzinfo-to-sql; do
           [ -x "$bin/$t" ] || return 1; done; [ -d /usr/share/zoneinfo/Asia ]; }
need_user() { [ "$(id -u)" = 0 ] && ! getent passwd mysql >/dev/null; }
if have && ! need_user; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "MariaDB is not installed: as root run $0 (apt-get install mariadb-server-core mariadb-client)" >&2
  exit 1
fi
if ! have; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -q -o DPkg::Lock::Timeout=300 update
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends mariadb-server-core mariadb-client tzdata
fi
if need_user; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mysql
fi
have || { echo "MariaDB still incomplete after installing (looked for $mariadbd and its tools in $bin)" >&2; exit 1; }
