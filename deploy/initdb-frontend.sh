#!/usr/bin/env bash
# postgres:15 image init hook (docker-compose.yml): the staging database beside `frontend`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c 'CREATE DATABASE staging'
