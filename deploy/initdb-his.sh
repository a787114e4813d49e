#!/usr/bin/env bash
# postgres:15 image init hook (docker-compose.yml): the CDC role, capture group and heartbeat table.
# The role's password comes from HISBRIDGE_HIS_PASSWORD in the container environment (\getenv in the SQL).
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v cdc_user="${HISBRIDGE_HIS_USER:-hisbridge_cdc}" \
     -f /hisbridge/postgres-setup.sql
