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
