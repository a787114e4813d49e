"""A MariaDB server of a test's own (the stack's devstack component with its own folder and port): on MariaDB
the simulated HIS is the database `his` itself — the name the source mapping reads — so a test isolates its
HIS by its own server, as the PostgreSQL tests do by their own database. Its files are under
<var>/mariadb/<name> (the `mysql` user must reach them: pytest's tmp folders are root's alone); stopped and
removed at cleanup."""
from __future__ import annotations

from devstack.mariadb import MariaDb
from support import Resources, free_port


def own_mariadb(res: Resources) -> MariaDb:
    server = MariaDb(res.settings, name=f"mariadb-test-{res.id}", port=free_port())

    def remove() -> None:
        server.stop()
        server.destroy()
    res.finally_(remove)
    server.start()
    return server


def engine_env(server: MariaDb) -> dict[str, str]:
    """The settings that point hisbridge (sim, connector, demo) at this server."""
    return {"HISBRIDGE_HIS_KIND": "mariadb", "HISBRIDGE_HIS_MARIADB_DSN": server.admin_dsn(),
            "HISBRIDGE_HIS_PORT": str(server.port), "HISBRIDGE_HIS_DB": "his"}
