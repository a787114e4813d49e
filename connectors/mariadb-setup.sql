-- One-time HIS preparation on MariaDB (10.5+) as an administrator; the local stack's mariadb-his runs it at
-- its first start with ${cdc_user}, ${cdc_host} (where Kafka Connect connects from) and ${cdc_password}
-- filled in as SQL literals. A hospital's DBA runs the same statements with their own values.
-- The SELECT grants on the captured tables are made by `hisbridge connectors apply --prepare` (per table,
-- like the PostgreSQL preparation), so the CDC user reads exactly what the connector captures.

-- The heartbeat table the connector's heartbeat.action.query writes (database `hisbridge`, not captured).
CREATE DATABASE IF NOT EXISTS hisbridge CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS hisbridge.heartbeat (id INT PRIMARY KEY, beat_at DATETIME(6) NOT NULL);

CREATE USER IF NOT EXISTS ${cdc_user}@${cdc_host} IDENTIFIED BY ${cdc_password};
ALTER USER ${cdc_user}@${cdc_host} IDENTIFIED BY ${cdc_password};
-- Reading the binlog (REPLICATION SLAVE) and its position (BINLOG MONITOR, which MariaDB 10.5+ calls what
-- Debezium's docs name REPLICATION CLIENT). No RELOAD: the connector snapshots with
-- snapshot.locking.mode=none (connectors/README.md says why), so it never takes FLUSH TABLES WITH READ LOCK.
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO ${cdc_user}@${cdc_host};
GRANT SELECT, INSERT, UPDATE ON hisbridge.heartbeat TO ${cdc_user}@${cdc_host};
