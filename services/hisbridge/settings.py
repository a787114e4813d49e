"""Settings: every knob of hisbridge, resolved once into one frozen object that entry points pass down.

Order: environment variable (HISBRIDGE_*) over the settings file over the default. The settings file is
YAML with one section per group below (`worker: {app_id: …}`), at HISBRIDGE_SETTINGS (default
`<home>/hisbridge.yaml`, optional). Secrets (the SM4 key, the HIS CDC password) come from the environment
or from a file a setting names (`sm4.key_file`), never from the settings file itself, and never print.

This is the only module that reads the process environment (`load_settings`, `child_environment`);
everything else receives a Settings (or the section it needs) from its caller:
the CLI builds it in its click group, the worker in `runtime.app.make_app`, the demo and tests through
`load_settings(environ)`. `hisbridge config show` prints every setting with its value and its source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

_CHECKOUT = Path(__file__).resolve().parents[2]   # services/hisbridge/settings.py → the checkout


class SettingsError(ValueError):
    """A setting has a value it cannot take: an operator must fix the environment or the settings file."""


class Secret:
    """A secret value: shown masked everywhere; `reveal()` where it is used."""
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --- the knobs, as data -------------------------------------------------------------------------------

Resolved = Mapping[str, Any]


@dataclass(frozen=True)
class Knob:
    key: str                                   # section.name (the settings file's spelling)
    env: str                                   # the environment variable
    parse: Callable[[str], Any]
    default: Any                               # a value, or a function of the knobs resolved before it
    secret: bool = False
    doc: str = ""


def _path(text: str) -> Path:
    return Path(text).expanduser().resolve()


def _int(text: str) -> int:
    return int(str(text).strip())


def _float(text: str) -> float:
    return float(str(text).strip())


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a yes/no value (1/0, true/false)")


def _str(text: str) -> str:
    return str(text)


def _optional_int(text: str) -> int | None:
    return _int(text) if str(text).strip() else None


def _optional_path(text: str) -> Path | None:
    return _path(text) if str(text).strip() else None


def _names(text: str) -> tuple[str, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(str(t).strip() for t in text if str(t).strip())
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


def _source_kind(text: str) -> str:
    kind = str(text).strip().lower()
    if kind not in ("postgres", *BINLOG_KINDS):
        raise ValueError(f"{text!r} is not one of postgres, {', '.join(BINLOG_KINDS)}")
    return kind


LANGUAGES = ("zh", "en", "both")


ROLES = ("hospital", "city")


def _role(text: str) -> str:
    value = str(text).strip().lower()
    if value not in ROLES:
        raise ValueError(f"expected one of {', '.join(ROLES)}")
    return value


def _language(text: str) -> str:
    lang = str(text).strip().lower()
    if lang not in LANGUAGES:
        raise ValueError(f"{text!r} is not one of {', '.join(LANGUAGES)}")
    return lang


def _log_format(text: str) -> str:
    kind = str(text).strip().lower()
    if kind not in ("text", "json"):
        raise ValueError(f"{text!r} is not text or json")
    return kind


def _secret(text: str) -> Secret | None:
    return Secret(str(text)) if str(text) else None


def dsn_fields(dsn: str) -> dict[str, str]:
    """The key=value pairs of a keyword DSN ("host=… dbname=his …", libpq's form, also used for MariaDB)."""
    return dict(part.split("=", 1) for part in dsn.split() if "=" in part)


def _dsn_field(dsn: str, name: str) -> str | None:
    return dsn_fields(dsn).get(name)


BINLOG_KINDS = ("mariadb", "mysql")


def is_binlog_kind(kind: str) -> bool:
    """MariaDB and MySQL: a HIS read from the binlog, whose "schema" is a database."""
    return kind in BINLOG_KINDS


def his_admin_dsn_of(values: Resolved) -> str:
    """The HIS administrator DSN for the source kind (resolved knob values)."""
    kind = values["source.kind"]
    return values["connections.his_mariadb_dsn"] if is_binlog_kind(kind) else values["connections.his_dsn"]


def _local_dsn(port_key: str, dbname: str) -> Callable[[Resolved], str]:
    return lambda r: f"host=127.0.0.1 port={r[port_key]} dbname={dbname} user=postgres"


KNOBS: tuple[Knob, ...] = (
    # paths
    Knob("paths.home", "HISBRIDGE_HOME", _path, _CHECKOUT, doc="the folder with schemas/, connectors/, deploy/, var/"),
    Knob("paths.schemas", "HISBRIDGE_SCHEMAS", _path, lambda r: r["paths.home"] / "schemas"),
    Knob("paths.catalog", "HISBRIDGE_CATALOG", _path, lambda r: r["paths.schemas"] / "catalog"),
    Knob("paths.valuesets", "HISBRIDGE_VALUESETS", _path, lambda r: r["paths.schemas"] / "valuesets"),
    Knob("paths.avro", "HISBRIDGE_AVRO", _path, lambda r: r["paths.schemas"] / "avro"),
    Knob("paths.frontend_sql", "HISBRIDGE_FRONTEND_SQL", _path, lambda r: r["paths.schemas"] / "frontend",
         doc="folder of the generated front-end DDL"),
    Knob("paths.mapping", "HISBRIDGE_MAPPING", _path, lambda r: r["paths.schemas"] / "mapping" / "demo_hospital.yaml"),
    Knob("paths.schedule", "HISBRIDGE_SCHEDULE", _path, lambda r: r["paths.schemas"] / "schedule.yaml"),
    Knob("paths.indicators", "HISBRIDGE_INDICATORS", _path, lambda r: r["paths.schemas"] / "indicators",
         doc="folder of the evaluation indicator definitions (*.yaml)"),
    Knob("paths.icd10_dict", "HISBRIDGE_ICD10_DICT", _optional_path, None,
         doc="a hospital's full ICD-10 dictionary (default: the shipped subset)"),
    Knob("paths.icd9cm3_dict", "HISBRIDGE_ICD9CM3_DICT", _optional_path, None),
    Knob("paths.var", "HISBRIDGE_VAR", _path, lambda r: r["paths.home"] / "var", doc="runtime state (git-ignored)"),
    Knob("paths.secrets", "HISBRIDGE_SECRETS", _path, lambda r: r["paths.var"] / "secrets"),
    Knob("paths.deploy", "HISBRIDGE_DEPLOY", _path, lambda r: r["paths.home"] / "deploy"),
    Knob("paths.jars", "HISBRIDGE_JARS", _path, lambda r: r["paths.deploy"] / "lib"),
    Knob("paths.connectors", "HISBRIDGE_CONNECTORS", _path, lambda r: r["paths.home"] / "connectors"),
    # the local stack's processes
    Knob("stack.his_pg_port", "HISBRIDGE_HIS_PG_PORT", _int, 55432),
    Knob("stack.frontend_pg_port", "HISBRIDGE_FRONTEND_PG_PORT", _int, 55433),
    Knob("stack.kafka_port", "HISBRIDGE_KAFKA_PORT", _int, 59092),
    Knob("stack.kafka_controller_port", "HISBRIDGE_KAFKA_CONTROLLER_PORT", _int, 59093),
    Knob("stack.connect_port", "HISBRIDGE_CONNECT_PORT", _int, 58083),
    Knob("stack.kafka_heap", "HISBRIDGE_KAFKA_HEAP", _str, "512m"),
    Knob("stack.connect_heap", "HISBRIDGE_CONNECT_HEAP", _str, "768m"),
    Knob("stack.pg_bin", "HISBRIDGE_PG_BIN", _path, Path("/usr/lib/postgresql/15/bin")),
    Knob("stack.his_mariadb_port", "HISBRIDGE_HIS_MARIADB_PORT", _int, 55306, doc="the local MariaDB HIS (mariadb-his)"),
    Knob("stack.mariadbd", "HISBRIDGE_MARIADBD", _path, Path("/usr/sbin/mariadbd"),
         doc="the MariaDB server binary; its tools (mariadb-install-db, mariadb…) are in ../bin beside it"),
    Knob("stack.prometheus_port", "HISBRIDGE_PROMETHEUS_PORT", _int, 59090, doc="the local Prometheus"),
    Knob("stack.prometheus", "HISBRIDGE_PROMETHEUS", _path, Path("/usr/bin/prometheus"),
         doc="the Prometheus server binary (Debian's package; promtool beside it)"),
    Knob("stack.prometheus_scrape", "HISBRIDGE_PROMETHEUS_SCRAPE", _str, "5s",
         doc="the local Prometheus's scrape and rule interval (deploy/prometheus/prometheus.yml has 15s)"),
    Knob("stack.his_slot_wal_keep", "HISBRIDGE_HIS_SLOT_WAL_KEEP", _str, "2GB",
         doc="max_slot_wal_keep_size of the local HIS: WAL a stopped slot may hold before it is invalidated"),
    Knob("stack.java", "HISBRIDGE_JAVA", _str, "", doc="java binary (default: stack.java_home/bin/java, then PATH)"),
    Knob("stack.java_home", "JAVA_HOME", _optional_path, None),
    # connections
    Knob("connections.his_dsn", "HISBRIDGE_HIS_DSN", _str, _local_dsn("stack.his_pg_port", "his")),
    Knob("connections.his_mariadb_dsn", "HISBRIDGE_HIS_MARIADB_DSN", _str,
         lambda r: f"unix_socket={r['paths.var'] / 'mariadb' / 'mariadb-his' / 'run' / 'mariadbd.sock'} user=root dbname=his",
         doc="MariaDB/MySQL HIS as an administrator (host= port= user= password= dbname= or unix_socket=)"),
    Knob("connections.frontend_dsn", "HISBRIDGE_FRONTEND_DSN", _str, _local_dsn("stack.frontend_pg_port", "frontend")),
    Knob("connections.staging_dsn", "HISBRIDGE_STAGING_DSN", _str, _local_dsn("stack.frontend_pg_port", "staging")),
    Knob("connections.kafka_bootstrap", "HISBRIDGE_KAFKA_BOOTSTRAP", _str, lambda r: f"127.0.0.1:{r['stack.kafka_port']}"),
    Knob("connections.connect_url", "HISBRIDGE_CONNECT_URL", _str, lambda r: f"http://127.0.0.1:{r['stack.connect_port']}"),
    Knob("connections.prometheus_url", "HISBRIDGE_PROMETHEUS_URL", _str,
         lambda r: f"http://127.0.0.1:{r['stack.prometheus_port']}"),
    Knob("connections.connect_timeout", "HISBRIDGE_CONNECT_TIMEOUT", _float, 3.0,
         doc="seconds status and the metrics wait for Kafka, Connect or a database before calling it down"),
    Knob("connections.topic_replication", "HISBRIDGE_TOPIC_REPLICATION", _int, 1),
    # the HIS as Debezium reaches it
    Knob("source.kind", "HISBRIDGE_HIS_KIND", _source_kind, "postgres",
         doc="postgres | mariadb | mysql: the HIS engine (connector template, sim dialect, port, DSN)"),
    Knob("source.connector", "HISBRIDGE_CONNECTOR_NAME", _str, lambda r: f"his-{r['source.kind']}"),
    Knob("source.topic_prefix", "HISBRIDGE_TOPIC_PREFIX", _str, "his", doc="Debezium topic.prefix"),
    Knob("source.host", "HISBRIDGE_HIS_HOST", _str, "127.0.0.1"),
    Knob("source.port", "HISBRIDGE_HIS_PORT", _int,
         lambda r: r["stack.his_mariadb_port"] if is_binlog_kind(r["source.kind"]) else r["stack.his_pg_port"]),
    Knob("source.db", "HISBRIDGE_HIS_DB", _str, lambda r: _dsn_field(his_admin_dsn_of(r), "dbname") or "his",
         doc="default: the HIS DSN's dbname"),
    Knob("source.user", "HISBRIDGE_HIS_USER", _str, "hisbridge_cdc"),
    Knob("source.password", "HISBRIDGE_HIS_PASSWORD", _secret, None, secret=True,
         doc="the CDC role's password (default: the secret `stack up` generated under paths.secrets)"),
    Knob("source.server_id", "HISBRIDGE_HIS_SERVER_ID", _optional_int, None,
         doc="MySQL/MariaDB replica id of the connector (default: derived from the connector name)"),
    Knob("source.heartbeat_ms", "HISBRIDGE_HEARTBEAT_MS", _int, 10000),
    Knob("source.max_retries", "HISBRIDGE_CONNECTOR_MAX_RETRIES", _int, 30,
         doc="Debezium errors.max.retries: retries of a connection-class error before the task is FAILED "
             "(and the worker's supervisor restarts it with back-off and raises the alert); -1 retries silently forever"),
    Knob("source.max_record_bytes", "HISBRIDGE_MAX_RECORD_BYTES", _int, 16 * 1024 * 1024,
         doc="largest change event Connect may produce and its raw topics accept (connectors/README.md)"),
    Knob("source.capture_tables", "HISBRIDGE_CAPTURE_TABLES", _names, (),
         doc="schema.table list the connector captures (default: what the mapping reads)"),
    # organisation (overrides the mapping's)
    Knob("org.code", "HISBRIDGE_ORG_CODE", _str, ""),
    Knob("org.name", "HISBRIDGE_ORG_NAME", _str, ""),
    # the worker
    # the deployment role first: the schedule mode's default follows it
    Knob("deployment.role", "HISBRIDGE_ROLE", _role, "hospital",
         doc="hospital | city (source = the city's upload tables, identity mapping, second check, relay window)"),
    Knob("worker.app_id", "HISBRIDGE_WORKER_APP_ID", _str, "hisbridge", doc="Faust app id = consumer group"),
    Knob("worker.agents", "HISBRIDGE_AGENTS", _names, ("transform", "sink"), doc="stages this worker runs"),
    Knob("worker.core_prefix", "HISBRIDGE_CORE_PREFIX", _str, "core"),
    Knob("worker.web_port", "HISBRIDGE_WORKER_WEB_PORT", _int, 56066, doc="0 = no web server"),
    Knob("worker.web_host", "HISBRIDGE_WORKER_WEB_HOST", _str, "127.0.0.1",
         doc="address the web server (health, /metrics) binds: 0.0.0.0 only where a scraper must reach it"),
    Knob("worker.lookup_wait", "HISBRIDGE_LOOKUP_WAIT", _float, 0.0,
         doc="upper bound, seconds, a record waits for a reference row (0 = until its batch closes)"),
    Knob("worker.transform_take", "HISBRIDGE_TRANSFORM_TAKE", _int, 2000,
         # 2,000 keeps the per-batch costs (fetch, produce round trip, commit) under a tenth of the work;
         # 500 gave ~4,200 raw messages/s, 2,000 ~6,100 (bench/RESULTS.md)
         doc="raw messages per batch"),
    Knob("worker.transform_within", "HISBRIDGE_TRANSFORM_WITHIN", _float, 1.0),
    Knob("worker.state_dir", "HISBRIDGE_STATE_DIR", _path, lambda r: r["paths.var"] / "state",
         doc="the transform's disk state (the reference store, RocksDB): one folder per worker process"),
    Knob("worker.produce_limit", "HISBRIDGE_PRODUCE_LIMIT", _int, 900_000,
         doc="bytes: a core record over it is quarantined as oversize (below the broker's message.max.bytes)"),
    Knob("worker.mark_every", "HISBRIDGE_MARK_EVERY", _float, 1.0, doc="seconds between two watermark marks"),
    Knob("worker.idle_mark_every", "HISBRIDGE_IDLE_MARK_EVERY", _float, 30.0,
         doc="seconds between two marks while no record went out (heartbeats alone move the watermark)"),
    Knob("worker.sink_take", "HISBRIDGE_SINK_TAKE", _int, 500),
    Knob("worker.sink_within", "HISBRIDGE_SINK_WITHIN", _float, 1.0),
    Knob("worker.sink_tick", "HISBRIDGE_SINK_TICK", _float, 5.0, doc="flush timer interval, seconds"),
    Knob("worker.schedule_mode", "HISBRIDGE_SCHEDULE_MODE", _str,
         lambda r: "city_relay" if r["deployment.role"] == "city" else "",
         doc="overrides the schedule file's mode (a city's default: city_relay, D 22:00 – D+1 03:00)"),
    Knob("worker.probe_topic", "HISBRIDGE_RAW_TOPIC", _str, lambda r: f"{r['source.topic_prefix']}.stackprobe.probe",
         doc="the stack probe agent's topic (agent `probe`, stack tests only)"),
    Knob("worker.probe_out", "HISBRIDGE_WORKER_OUT", _path, lambda r: r["paths.var"] / "worker" / "received.jsonl"),
    # operations: metrics, connector health
    Knob("ops.metrics_every", "HISBRIDGE_METRICS_EVERY", _float, 5.0,
         doc="seconds between two reads of lag, batches, connectors and slots for /metrics"),
    Knob("ops.connectors", "HISBRIDGE_WATCH_CONNECTORS", _names, lambda r: (r["source.connector"],),
         doc="connectors the worker watches (metrics) and restarts when a task FAILED"),
    Knob("ops.supervise_connectors", "HISBRIDGE_SUPERVISE_CONNECTORS", _bool, True,
         doc="the worker restarts FAILED connector tasks (with back-off)"),
    Knob("ops.restart_first", "HISBRIDGE_RESTART_FIRST", _float, 10.0, doc="seconds before the first task restart"),
    Knob("ops.restart_cap", "HISBRIDGE_RESTART_CAP", _float, 600.0, doc="longest wait between two task restarts"),
    Knob("ops.restart_reset", "HISBRIDGE_RESTART_RESET", _float, 900.0,
         doc="seconds RUNNING after which a task's back-off starts again from restart_first"),
    # SM4
    Knob("sm4.key", "HISBRIDGE_SM4_KEY", _secret, None, secret=True, doc="32 hex characters"),
    Knob("sm4.key_file", "HISBRIDGE_SM4_KEY_FILE", _optional_path, None),
    Knob("sm4.key_version", "HISBRIDGE_SM4_KEY_VERSION", _str, ""),
    Knob("sm4.mode", "HISBRIDGE_SM4_MODE", lambda t: str(t).lower(), "ecb", doc="ecb | cbc"),
    Knob("sm4.padding", "HISBRIDGE_SM4_PADDING", lambda t: str(t).lower(), "pkcs7", doc="pkcs7 | pkcs5"),
    Knob("sm4.encoding", "HISBRIDGE_SM4_ENCODING", lambda t: str(t).lower(), "hex", doc="hex | base64"),
    Knob("sm4.uppercase", "HISBRIDGE_SM4_UPPERCASE", _bool, False),
    Knob("sm4.iv", "HISBRIDGE_SM4_IV", _str, "", doc="32 hex characters (CBC)"),
    # the clock (demo and tests steer it)
    Knob("clock.start", "HISBRIDGE_CLOCK_START", _str, "", doc="ISO moment with offset; empty = real time"),
    Knob("clock.speed", "HISBRIDGE_CLOCK_SPEED", _float, 1.0),
    Knob("clock.file", "HISBRIDGE_CLOCK_FILE", _optional_path, None, doc="JSON {now, speed} steering the clock"),

    # the deployment role: a hospital (HIS → province) or a city platform relaying its hospitals' uploads
    Knob("deployment.city_hospitals", "HISBRIDGE_CITY_HOSPITALS", _path,
         lambda r: r["paths.schemas"] / "city" / "hospitals.yaml", doc="the city's hospital list (codes, names)"),
    Knob("deployment.city_schema", "HISBRIDGE_CITY_SCHEMA", _str, "city",
         doc="the schema of the city database holding the hospitals' catalog-shaped uploads"),
    Knob("deployment.city_deadline", "HISBRIDGE_CITY_DEADLINE", _str, "22:00",
         doc="each hospital's batch D must be complete by D at this local time"),

    Knob("display.lang", "HISBRIDGE_LANG", _language, "both",
         doc="operator messages and help: zh | en | both (Chinese first)"),
    Knob("display.log_format", "HISBRIDGE_LOG_FORMAT", _log_format, "text", doc="text | json (one JSON object a line)"),
    Knob("display.log_level", "HISBRIDGE_LOG_LEVEL", lambda t: str(t).strip().upper(), "INFO",
         doc="DEBUG shows watermark marks and per-partition detail"),
)

SETTINGS_FILE_ENV = "HISBRIDGE_SETTINGS"
_BY_KEY = {k.key: k for k in KNOBS}


# --- the typed object ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paths:
    home: Path
    schemas: Path
    catalog: Path
    valuesets: Path
    avro: Path
    frontend_sql: Path
    mapping: Path
    schedule: Path
    indicators: Path
    icd10_dict: Path | None
    icd9cm3_dict: Path | None
    var: Path
    secrets: Path
    deploy: Path
    jars: Path
    connectors: Path

    @property
    def his_cdc_password_file(self) -> Path:
        return self.secrets / "his_cdc_password"


@dataclass(frozen=True)
class Stack:
    his_pg_port: int
    frontend_pg_port: int
    kafka_port: int
    kafka_controller_port: int
    connect_port: int
    prometheus_port: int
    prometheus: Path
    prometheus_scrape: str
    his_slot_wal_keep: str
    kafka_heap: str
    connect_heap: str
    pg_bin: Path
    his_mariadb_port: int
    mariadbd: Path
    java: str
    java_home: Path | None


@dataclass(frozen=True)
class Connections:
    his_dsn: str
    his_mariadb_dsn: str
    frontend_dsn: str
    staging_dsn: str
    kafka_bootstrap: str
    connect_url: str
    prometheus_url: str
    connect_timeout: float
    topic_replication: int


@dataclass(frozen=True)
class Source:
    kind: str
    connector: str
    topic_prefix: str
    host: str
    port: int
    db: str
    user: str
    password: Secret | None
    server_id: int | None
    heartbeat_ms: int
    max_retries: int
    max_record_bytes: int
    capture_tables: tuple[str, ...]


@dataclass(frozen=True)
class Org:
    code: str
    name: str


@dataclass(frozen=True)
class Worker:
    app_id: str
    agents: tuple[str, ...]
    core_prefix: str
    web_port: int
    web_host: str
    lookup_wait: float
    transform_take: int
    transform_within: float
    state_dir: Path
    produce_limit: int
    mark_every: float
    idle_mark_every: float
    sink_take: int
    sink_within: float
    sink_tick: float
    schedule_mode: str
    probe_topic: str
    probe_out: Path


@dataclass(frozen=True)
class Ops:
    metrics_every: float
    connectors: tuple[str, ...]
    supervise_connectors: bool
    restart_first: float
    restart_cap: float
    restart_reset: float


@dataclass(frozen=True)
class Sm4:
    key: Secret | None
    key_file: Path | None
    key_version: str
    mode: str
    padding: str
    encoding: str
    uppercase: bool
    iv: str


@dataclass(frozen=True)
class ClockSettings:
    start: str
    speed: float
    file: Path | None


@dataclass(frozen=True)
class Deployment:
    role: str
    city_hospitals: Path
    city_schema: str
    city_deadline: str


@dataclass(frozen=True)
class Display:
    lang: str
    log_format: str
    log_level: str


@dataclass(frozen=True)
class Settings:
    paths: Paths
    stack: Stack
    connections: Connections
    source: Source
    org: Org
    worker: Worker
    ops: Ops
    sm4: Sm4
    clock: ClockSettings
    deployment: Deployment
    display: Display
    origin: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)   # key → env|file|default

    def with_values(self, **changes: Mapping[str, Any]) -> "Settings":
        """A copy with some sections' fields changed: `s.with_values(worker={"app_id": "x"})`."""
        sections = {name: replace(getattr(self, name), **values) for name, values in changes.items()}
        return replace(self, **sections)


_SECTIONS = {"paths": Paths, "stack": Stack, "connections": Connections, "source": Source, "org": Org,
             "worker": Worker, "ops": Ops, "sm4": Sm4, "clock": ClockSettings,
             "deployment": Deployment, "display": Display}


# --- resolution -----------------------------------------------------------------------------------------

def _read_file(path: Path | None) -> tuple[dict[str, Any], str | None]:
    if path is None or not path.exists():
        return {}, None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"设置文件不是有效的 YAML / settings file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"设置文件应为分节映射 / settings file {path} must map sections to settings")
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise SettingsError(f"{path}: 节 {section} 应为映射 / section {section!r} must be a mapping")
        for name, value in values.items():
            key = f"{section}.{name}"
            knob = _BY_KEY.get(key)
            if knob is None:
                raise SettingsError(f"{path}: 未知设置 / unknown setting {key!r}")
            if knob.secret:
                raise SettingsError(f"{path}: 密钥不得写在设置文件中 / secret {key!r} may not be in the settings "
                                    f"file: set {knob.env} or a key file")
            flat[key] = value
    return flat, str(path)


def _parse(knob: Knob, raw: Any, where: str) -> Any:
    try:
        return knob.parse(raw)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"设置 {knob.key} 的值无效 / {where}: {knob.key} cannot be {raw!r}"
                            f" ({exc})") from None


def resolve(environ: Mapping[str, str], file_values: Mapping[str, Any], file_name: str | None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """Every knob's value and where it came from (env > file > default), in KNOBS order."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for knob in KNOBS:
        env_value = environ.get(knob.env)
        if env_value not in (None, ""):
            values[knob.key] = _parse(knob, env_value, f"environment {knob.env}")
            origin[knob.key] = f"env {knob.env}"
        elif knob.key in file_values:
            values[knob.key] = _parse(knob, file_values[knob.key], f"file {file_name}")
            origin[knob.key] = f"file {file_name}"
        else:
            values[knob.key] = knob.default(values) if callable(knob.default) else knob.default
            origin[knob.key] = "default"
    return values, origin


def build(values: Mapping[str, Any], origin: Mapping[str, str] | None = None) -> Settings:
    sections = {}
    for name, cls in _SECTIONS.items():
        sections[name] = cls(**{f.name: values[f"{name}.{f.name}"] for f in fields(cls)})
    return Settings(**sections, origin=dict(origin or {}))


def load_settings(environ: Mapping[str, str] | None = None, file: Path | None = None) -> Settings:
    """The settings of this process (or of `environ`, for a test or a child process)."""
    env = os.environ if environ is None else environ
    if file is None:
        named = env.get(SETTINGS_FILE_ENV)
        if named:
            file = _path(named)
            if not file.exists():
                raise SettingsError(f"设置文件不存在 / settings file {file} ({SETTINGS_FILE_ENV}) does not exist")
        else:
            home = _path(env["HISBRIDGE_HOME"]) if env.get("HISBRIDGE_HOME") else _CHECKOUT
            file = home / "hisbridge.yaml"
    file_values, file_name = _read_file(file)
    values, origin = resolve(env, file_values, file_name)
    return build(values, origin)


@lru_cache(maxsize=1)
def defaults() -> Settings:
    """Every knob at its default: the checkout's own layout. What a library function falls back to when its
    caller passes no path (tests, tools); entry points always pass their settings' paths."""
    values, origin = resolve({}, {}, None)
    return build(values, origin)


def display_language(environ: Mapping[str, str] | None = None) -> str:
    """The language of operator messages even when the rest of the settings cannot be resolved (the message
    saying so must be readable): display.lang, else the environment's HISBRIDGE_LANG, else both."""
    env = os.environ if environ is None else environ
    try:
        return load_settings(env).display.lang
    except SettingsError:
        try:
            return _language(env.get("HISBRIDGE_LANG") or "both")
        except ValueError:
            return "both"


def child_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (a worker, a tool): this process's, with `overrides` on top.

    A child builds its own Settings from it, so anything a parent changed in memory must be an override."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (overrides or {}).items()})
    return env


def environment_for(settings: Settings, keys: Iterable[str] | None = None) -> dict[str, str]:
    """HISBRIDGE_* variables that reproduce `settings` (all knobs, or `keys`) in a child process; secrets
    included as their values (a child needs them), so the result is never logged."""
    out: dict[str, str] = {}
    for knob in KNOBS:
        if keys is not None and knob.key not in keys:
            continue
        section, name = knob.key.split(".")
        value = getattr(getattr(settings, section), name)
        if value is None:
            continue
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, (tuple, list)):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        out[knob.env] = str(value)
    return out


def describe(settings: Settings) -> list[dict[str, str]]:
    """What `hisbridge config show` prints: key, environment variable, value (secrets masked), source."""
    rows = []
    for knob in KNOBS:
        section, name = knob.key.split(".")
        value = getattr(getattr(settings, section), name)
        if knob.secret:
            shown = "(set, hidden)" if value is not None else "(not set)"
        elif isinstance(value, (tuple, list)):
            shown = ",".join(value)
        else:
            shown = "" if value is None else str(value)
        rows.append({"key": knob.key, "env": knob.env, "value": shown,
                     "source": settings.origin.get(knob.key, "default"), "doc": knob.doc})
    return rows
