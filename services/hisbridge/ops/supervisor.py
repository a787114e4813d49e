"""Connector health: a FAILED Debezium connector or task is restarted through Connect's REST API, with a
back-off that doubles while it keeps failing and starts again once it has stayed RUNNING for a while.

`Supervisor.step(views, now)` is pure over ops.observe.ConnectorView values (what to restart now, and the
history it keeps); `restart(client, r)` is the one REST call. The worker runs both on a timer
(runtime.monitor), logs every restart with its trace summary and counts it (hisbridge_connector_task_restarts;
hisbridge_connector_task_consecutive_restarts drives the "keeps failing" alert).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hisbridge.ops.observe import ConnectorView

CONNECTOR_TASK = -1   # the connector itself (not one of its tasks) FAILED


@dataclass(frozen=True)
class Policy:
    first: float = 10.0     # seconds from the first FAILED sighting to the first restart
    cap: float = 600.0      # longest wait between two restarts
    reset: float = 900.0    # RUNNING this long → the next failure starts the back-off again

    def delay(self, restarts: int) -> float:
        return min(self.first * (2 ** restarts), self.cap)


@dataclass
class TaskHistory:
    consecutive: int = 0             # restarts without a RUNNING stretch of `reset` seconds in between
    total: int = 0
    failed_since: float | None = None
    running_since: float | None = None
    last_restart: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Restart:
    connector: str
    task: int                        # CONNECTOR_TASK: restart the connector (and its failed tasks)
    attempt: int                     # 1 for the first restart of a failure streak
    reason: str


@dataclass
class Supervisor:
    policy: Policy = field(default_factory=Policy)
    history: dict[tuple[str, int], TaskHistory] = field(default_factory=dict)

    def step(self, views: list[ConnectorView], now: float) -> list[Restart]:
        """The restarts due at `now` (epoch seconds) for these connector states."""
        due = []
        for view in views:
            parts = [(CONNECTOR_TASK, view.state, view.reason)] + [(t.id, t.state, t.reason) for t in view.tasks]
            for task, state, reason in parts:
                restart = self._observe((view.name, task), state, reason, now)
                if restart is not None:
                    due.append(Restart(view.name, task, restart.consecutive, restart.reason or "no trace"))
        return due

    def _observe(self, key: tuple[str, int], state: str, reason: str | None, now: float) -> TaskHistory | None:
        h = self.history.setdefault(key, TaskHistory())
        if state != "FAILED":
            h.failed_since = None
            if state == "RUNNING":
                h.running_since = now if h.running_since is None else h.running_since
                if h.consecutive and now - h.running_since >= self.policy.reset:
                    h.consecutive = 0
            return None
        h.running_since = None
        h.failed_since = now if h.failed_since is None else h.failed_since
        h.reason = reason
        since = h.last_restart if h.last_restart is not None and h.consecutive else h.failed_since
        if now - since < self.policy.delay(h.consecutive):
            return None
        h.consecutive += 1
        h.total += 1
        h.last_restart = now
        return h

    def consecutive(self) -> dict[tuple[str, str], int]:
        """(connector, task label) → consecutive restarts of every task seen (0 too, so the series exist)."""
        return {(c, task_label(t)): h.consecutive for (c, t), h in self.history.items()
                if t != CONNECTOR_TASK or h.total}


def task_label(task: int) -> str:
    return "connector" if task == CONNECTOR_TASK else str(task)


def restart(client, r: Restart) -> None:
    """POST the restart: a task alone, or the connector with its failed tasks."""
    from hisbridge.ops.connectors import ConnectorError
    path = (f"/connectors/{r.connector}/restart?includeTasks=true&onlyFailed=true" if r.task == CONNECTOR_TASK
            else f"/connectors/{r.connector}/tasks/{r.task}/restart")
    status, body = client.request("POST", path, timeout=10)
    if status not in (200, 202, 204):
        raise ConnectorError(f"restart of {r.connector} task {r.task} refused: HTTP {status} {body}")
