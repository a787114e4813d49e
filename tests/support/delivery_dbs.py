"""A staging and a front-end database of a test module's own on the stack's front-end server, with their
schemas, for the sink's database tests (removed with the module's resources)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg2
from hisbridge.delivery import staging
from hisbridge.delivery.flush import ensure_frontend
from support import Resources


def delivery_dsns(res: Resources, tag: str) -> dict[str, str]:
    return {"frontend": res.database("frontend", f"{tag}_front_{res.id}"),
            "staging": res.database("frontend", f"{tag}_stage_{res.id}")}


def connect(dsn: str):
    return psycopg2.connect(dsn, connect_timeout=5)


@contextmanager
def delivery_dbs(dsns: dict[str, str]) -> Iterator[tuple]:
    """(staging, front-end) connections, schemas ensured; closed afterwards."""
    front, stage = connect(dsns["frontend"]), connect(dsns["staging"])
    try:
        ensure_frontend(front)
        staging.ensure_schema(stage)
        yield stage, front
    finally:
        front.close()
        stage.close()
