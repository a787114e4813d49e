"""One place where configuration is resolved: environment variables override defaults and files.

Paths default to the repository layout (schemas/, var/) so a checkout works as-is; a deployment points
HISBRIDGE_HOME (or the individual variables) elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout (or deployment) folder that holds schemas/, connectors/, deploy/ and var/."""
    env = os.environ.get("HISBRIDGE_HOME")
    if env:
        return Path(env).resolve()
    # services/hisbridge/config.py → three levels up is the checkout
    return Path(__file__).resolve().parents[2]


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from exc


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).resolve() if value else default


def schemas_dir() -> Path:
    return env_path("HISBRIDGE_SCHEMAS", project_root() / "schemas")


def catalog_dir() -> Path:
    return env_path("HISBRIDGE_CATALOG", schemas_dir() / "catalog")


def valuesets_dir() -> Path:
    return env_path("HISBRIDGE_VALUESETS", schemas_dir() / "valuesets")


def avro_dir() -> Path:
    return env_path("HISBRIDGE_AVRO", schemas_dir() / "avro")


def var_dir() -> Path:
    """Runtime state (databases, logs, pid files): git-ignored."""
    return env_path("HISBRIDGE_VAR", project_root() / "var")


# --- connections of the local stack (defaults = the ports `hisbridge stack up` uses; env overrides) ---
# Non-default ports so a hospital machine's own PostgreSQL/Kafka are never touched.

def his_pg_port() -> int:
    return env_int("HISBRIDGE_HIS_PG_PORT", 55432)


def frontend_pg_port() -> int:
    return env_int("HISBRIDGE_FRONTEND_PG_PORT", 55433)


def his_dsn() -> str:
    """The (simulated) HIS database that Debezium reads; wal_level=logical."""
    return env_str("HISBRIDGE_HIS_DSN", f"host=127.0.0.1 port={his_pg_port()} dbname=his user=postgres")


def frontend_dsn() -> str:
    """The provincial front-end database (前置机) the sink writes into."""
    return env_str("HISBRIDGE_FRONTEND_DSN",
                   f"host=127.0.0.1 port={frontend_pg_port()} dbname=frontend user=postgres")


def staging_dsn() -> str:
    """Hospital-side staging and ledger database."""
    return env_str("HISBRIDGE_STAGING_DSN",
                   f"host=127.0.0.1 port={frontend_pg_port()} dbname=staging user=postgres")


def kafka_port() -> int:
    return env_int("HISBRIDGE_KAFKA_PORT", 59092)


def kafka_bootstrap() -> str:
    return env_str("HISBRIDGE_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port()}")


def connect_port() -> int:
    return env_int("HISBRIDGE_CONNECT_PORT", 58083)


def connect_url() -> str:
    return env_str("HISBRIDGE_CONNECT_URL", f"http://127.0.0.1:{connect_port()}")


# --- local stack: folders, the CDC role and its secret (added by the stack; env overrides defaults) ---

def deploy_dir() -> Path:
    return env_path("HISBRIDGE_DEPLOY", project_root() / "deploy")


def jars_dir() -> Path:
    """Jars fetched by deploy/pom.xml: kafka/, connect/, plugins/<connector>/ (git-ignored)."""
    return env_path("HISBRIDGE_JARS", deploy_dir() / "lib")


def connectors_dir() -> Path:
    return env_path("HISBRIDGE_CONNECTORS", project_root() / "connectors")


def secrets_dir() -> Path:
    """Generated secrets (0600 files) — under var/, never in the repository."""
    return env_path("HISBRIDGE_SECRETS", var_dir() / "secrets")


def kafka_controller_port() -> int:
    return env_int("HISBRIDGE_KAFKA_CONTROLLER_PORT", 59093)


def his_cdc_user() -> str:
    """The replication role Debezium logs in as (password auth over TCP)."""
    return env_str("HISBRIDGE_HIS_USER", "hisbridge_cdc")


def his_cdc_password_file() -> Path:
    return secrets_dir() / "his_cdc_password"


def his_cdc_password() -> str:
    """HISBRIDGE_HIS_PASSWORD if set, else the secret `stack up` generated; an operator error otherwise."""
    value = os.environ.get("HISBRIDGE_HIS_PASSWORD")
    if value:
        return value
    path = his_cdc_password_file()
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    raise RuntimeError(f"no HIS CDC password: set HISBRIDGE_HIS_PASSWORD or run `hisbridge stack up` "
                       f"(which generates {path})")


def his_host() -> str:
    """Host of the HIS database as Debezium (Kafka Connect) reaches it."""
    return env_str("HISBRIDGE_HIS_HOST", "127.0.0.1")


def raw_topic_prefix() -> str:
    """Debezium topic.prefix: raw topics are <prefix>.<schema>.<table>."""
    return env_str("HISBRIDGE_TOPIC_PREFIX", "his")
