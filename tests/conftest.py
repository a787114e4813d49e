"""Shared fixtures. Tests marked `stack` get the real local stack: started here when it is not running
(and then stopped at the end), left alone when `make test`/`make up` already started it."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "stack_restart: stops and restarts the stack; runs after all other tests")


def pytest_collection_modifyitems(config, items):
    """Tests that take the stack down run last, so they never pull it from under another test."""
    items.sort(key=lambda item: item.get_closest_marker("stack_restart") is not None)


@pytest.fixture(scope="session")
def local_stack():
    from hisbridge import stack
    started = stack.up()
    yield stack
    if started:
        stack.down(started)


@pytest.fixture(autouse=True)
def _stack_for_stack_tests(request):
    if request.node.get_closest_marker("stack"):
        request.getfixturevalue("local_stack")
