"""Run calls at the same moment in real threads, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

# The test server is shared (max_connections=100 for everybody's suites), so
# at most this many threads hold a connection at once; all of them are still
# released together by the barrier and contend for the same rows.
MAX_CONNECTIONS = 20


def race(calls: Sequence[Callable[[], Any]], *, timeout: float = 120) -> list[Any]:
    """Start every call behind one barrier; return each one's result or exception, in order."""
    barrier = threading.Barrier(len(calls))
    gate = threading.BoundedSemaphore(MAX_CONNECTIONS)
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            with gate:
                try:
                    outcomes[index] = call()
                finally:
                    connections.close_all()  # this thread's connections only
        except BaseException as error:  # handed back to the test, which decides
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return outcomes


def errors(outcomes: Sequence[Any], kind: type[BaseException] = BaseException) -> list[Any]:
    """The outcomes that are exceptions of `kind`."""
    return [outcome for outcome in outcomes if isinstance(outcome, kind)]
