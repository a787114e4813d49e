"""Shared fixtures. Tests marked `stack` get the real local stack: started here when it is not running
(and then stopped at the end), left alone when `make test`/`make up` already started it. Everything a
stack test creates on it goes through `resources` / `module_resources` (tests/support) and is removed
afterwards, also when the test fails."""
from __future__ import annotations

import pytest
from hisbridge.settings import Settings, load_settings
from support import Resources


def pytest_configure(config):
    config.addinivalue_line("markers", "stack_restart: stops and restarts the stack; runs after all other tests")


def pytest_collection_modifyitems(config, items):
    """Tests that take the stack down run last, so they never pull it from under another test."""
    items.sort(key=lambda item: item.get_closest_marker("stack_restart") is not None)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings of the test process (the local stack's ports and folders unless the environment says else)."""
    return load_settings()


@pytest.fixture(scope="session")
def local_stack(settings):
    import devstack
    started = devstack.up(settings)
    yield settings
    if started:
        devstack.down(settings, started)


@pytest.fixture(autouse=True)
def _stack_for_stack_tests(request):
    if request.node.get_closest_marker("stack"):
        request.getfixturevalue("local_stack")


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
