-- One-time preparation of a PostgreSQL HIS database for Debezium (run as a superuser in the HIS database).
-- `hisbridge stack up` runs it on the local HIS; on a hospital server a DBA runs:
--   HISBRIDGE_HIS_PASSWORD=... psql -v cdc_user=hisbridge_cdc -d <his db> -f connectors/postgres-setup.sql
-- The password comes from the environment (\getenv), so it never appears on a command line or in a file.
--
-- Why a group role: pgoutput publications can only name tables their creator owns, and Debezium
-- (publication.autocreate.mode=filtered) creates/updates its publication itself. Following Debezium's
-- documentation, captured tables are owned by the NOLOGIN group `hisbridge_capture` of which the CDC login
-- is a member; `hisbridge connectors apply --prepare` hands the included tables to that group and sets
-- REPLICA IDENTITY FULL (full before-images on update/delete).
\set ON_ERROR_STOP on
\getenv cdc_password HISBRIDGE_HIS_PASSWORD

SELECT 'CREATE ROLE hisbridge_capture NOLOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hisbridge_capture') \gexec
SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'cdc_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'cdc_user') \gexec
ALTER ROLE :"cdc_user" WITH LOGIN REPLICATION PASSWORD :'cdc_password';
GRANT hisbridge_capture TO :"cdc_user";
-- CREATE on the database lets the CDC role create its publication
SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'cdc_user') \gexec

-- Heartbeat table: Debezium's heartbeat.action.query updates it so the replication slot keeps advancing
-- (and WAL is released) while the captured tables are quiet but the rest of the HIS is busy.
CREATE SCHEMA IF NOT EXISTS hisbridge AUTHORIZATION hisbridge_capture;
CREATE TABLE IF NOT EXISTS hisbridge.heartbeat (id int PRIMARY KEY, beat_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE hisbridge.heartbeat OWNER TO hisbridge_capture;
ALTER TABLE hisbridge.heartbeat REPLICA IDENTITY FULL;
