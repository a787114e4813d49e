"""The connector supervisor's decisions: when a FAILED task is restarted, how the back-off grows, when it
starts again."""
from hisbridge.ops.observe import ConnectorView, TaskView
from hisbridge.ops.supervisor import CONNECTOR_TASK, Policy, Supervisor


def view(task_state: str, connector_state: str = "RUNNING") -> list[ConnectorView]:
    reason = "PSQLException: ERROR: permission denied for table t" if task_state == "FAILED" else None
    return [ConnectorView("his", connector_state, (TaskView(0, task_state, reason),))]


def test_a_failed_task_waits_the_first_delay_then_is_restarted_with_its_reason():
    s = Supervisor(Policy(first=10, cap=60, reset=300))
    assert s.step(view("FAILED"), 100) == []
    assert s.step(view("FAILED"), 109) == []
    (r,) = s.step(view("FAILED"), 110)
    assert (r.connector, r.task, r.attempt) == ("his", 0, 1) and "permission denied" in r.reason


def test_the_back_off_doubles_while_it_keeps_failing_up_to_the_cap():
    s = Supervisor(Policy(first=10, cap=30, reset=300))
    s.step(view("FAILED"), 0)
    restarts = [t for t in range(0, 200) if s.step(view("FAILED"), t)]
    assert restarts[:4] == [10, 30, 60, 90]          # waits 10, 20, then the 30 s cap
    assert s.consecutive() == {("his", "0"): len(restarts)}


def test_a_task_running_for_the_reset_time_starts_the_back_off_again():
    s = Supervisor(Policy(first=10, cap=600, reset=300))
    s.step(view("FAILED"), 0)
    s.step(view("FAILED"), 10)
    s.step(view("FAILED"), 11)
    assert s.step(view("FAILED"), 30)                # second restart after 20 s
    s.step(view("RUNNING"), 40)
    s.step(view("RUNNING"), 340)                     # 300 s RUNNING: the streak is over
    assert s.consecutive() == {("his", "0"): 0}
    s.step(view("FAILED"), 400)
    assert s.step(view("FAILED"), 410)               # the first delay again, not 40 s


def test_a_short_recovery_keeps_the_back_off():
    s = Supervisor(Policy(first=10, cap=600, reset=300))
    s.step(view("FAILED"), 0)
    s.step(view("FAILED"), 10)
    s.step(view("RUNNING"), 12)
    assert s.step(view("FAILED"), 15) == []
    assert s.step(view("FAILED"), 29) == [] and s.step(view("FAILED"), 30)   # 20 s after the last restart


def test_a_failed_connector_is_restarted_as_a_whole_and_paused_is_left_alone():
    s = Supervisor(Policy(first=0, cap=0, reset=300))
    failed = [ConnectorView("his", "FAILED", (), "ConnectException: boom")]
    (r,) = s.step(failed, 0)
    assert r.task == CONNECTOR_TASK and r.reason == "ConnectException: boom"
    assert s.step(view("PAUSED", "PAUSED"), 1) == []
