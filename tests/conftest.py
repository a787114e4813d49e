"""Shared fixtures. Tests marked `stack` get the real local stack: started here when it is not running
(and then stopped at the end), left alone when `make test`/`make up` already started it. Everything a
stack test creates on it goes through `resources` / `module_resources` (tests/support) and is removed
afterwards, also when the test fails — and, should the run be killed first, when the next session starts."""
from __future__ import annotations

import os

import pytest
from hisbridge.settings import Settings, load_settings
from support import Resources, sweep_dead_runs


# Every worker a test starts inherits these (Faust reads them from the environment): a killed member leaves
# its group after 10 s instead of Faust's 60, so a restarted worker takes its partitions over that much sooner.
TEST_WORKER_ENV = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


def pytest_configure(config):
    for name, value in TEST_WORKER_ENV.items():
        os.environ.setdefault(name, value)
    config.addinivalue_line("markers", "stack_restart: stops and restarts the stack; runs after all other tests")
    config.addinivalue_line("markers", "demo_day_mutates: changes the shared demo day; runs after its readers")


def pytest_collection_modifyitems(config, items):
    """Tests that take the stack down run last, so they never pull it from under another test; before them
    the tests that change the shared demo day, so every reader sees the day as the demo left it."""
    items.sort(key=lambda item: (item.get_closest_marker("stack_restart") is not None,
                                 item.get_closest_marker("demo_day_mutates") is not None))


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings of the test process (the local stack's ports and folders unless the environment says else)."""
    return load_settings()


@pytest.fixture(scope="session")
def local_stack(settings, request):
    import devstack
    started = devstack.up(settings)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in sweep_dead_runs(settings):       # what a killed earlier run left on the stack
        if reporter is not None:
            reporter.write_line(line)
    yield settings
    if started:
        devstack.down(settings, started)


@pytest.fixture(autouse=True)
def _stack_for_stack_tests(request):
    if request.node.get_closest_marker("stack"):
        request.getfixturevalue("local_stack")
    if request.node.get_closest_marker("stack_restart"):
        _end_shared()         # the shared day's worker must not run through a stack restart


_SHARED: list[Resources] = []      # the session's own resources while they exist


def _end_shared() -> None:
    while _SHARED:
        problems = _SHARED.pop().cleanup()
        assert not problems, "cleanup left things behind: " + "; ".join(problems)


def _resources(settings: Settings):
    res = Resources(settings)
    yield res
    problems = res.cleanup()
    assert not problems, "cleanup left things behind: " + "; ".join(problems)


@pytest.fixture
def resources(settings, local_stack):
    yield from _resources(settings)


@pytest.fixture(scope="module")
def module_resources(settings, local_stack):
    yield from _resources(settings)


@pytest.fixture(scope="session")
def session_resources(settings, local_stack):
    """Removed at the session's end, or before the first test that restarts the stack (all of whose users
    run before it: pytest_collection_modifyitems)."""
    res = Resources(settings)
    _SHARED.append(res)
    yield res
    _end_shared()


@pytest.fixture(scope="session")
def demo_day(settings, session_resources, tmp_path_factory):
    """The demo day the e2e, metrics and replay tests share (support.demo_day), run at its first use."""
    from support.demo_day import run_demo_day
    return run_demo_day(settings, session_resources, tmp_path_factory.mktemp("demo-day"))
