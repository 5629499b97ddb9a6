"""Leases kept alive while slow work runs: renewed from a thread, given up when lost.

A lease (a saga step's, a delivery's) tells other processes that its holder is
alive; when it runs out, another process takes the work over. Work slower than
the lease (a provider call, an SMTP server) keeps it by renewing it, so only a
holder that stopped (killed, frozen) loses it. The thread opens a database
connection only when the work outlives its first interval, which fast work
never does, and it stops at the first renewal that fails: a lease once lost
is never taken back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection

logger = logging.getLogger("shopflow.leases")


@contextmanager
def lease_renewed(renew: Callable[[], bool], *, every: float, longest: float) -> Iterator[None]:
    """Call `renew` every `every` seconds while the block runs, for `longest` seconds at most.

    `renew` returns False once the lease is lost (then renewing stops).
    """
    stop = threading.Event()

    def keep() -> None:
        try:
            for _ in range(int(longest / every)):
                if stop.wait(every) or not renew():
                    return
        except Exception:  # the lease then runs out, which is safe
            logger.warning("renewing a lease failed", exc_info=True)
        finally:
            connection.close()  # this thread's own connection, if it opened one

    thread = threading.Thread(target=keep, name="lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
