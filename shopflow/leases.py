"""Leases kept alive while slow work runs: renewed from a thread, given up when lost.

A lease (a saga step's, a delivery's) tells other processes that its holder is
alive; when it runs out, another process takes the work over. Work slower than
the lease (a provider call, an SMTP server) keeps it by renewing it, so only a
holder that stopped (killed, frozen) loses it. A lease once lost is never
taken back: renewing stops at the first renewal that fails.

One renewal thread per process serves every lease held in it (`_Renewer`),
started with the first lease and kept: a thread started and joined per piece
of work cost more CPU than the work it guarded when, as almost always, the
work ends long before its first renewal. The thread opens a database
connection only when some work outlives its first interval, and closes it
whenever no lease is left to renew.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection

logger = logging.getLogger("shopflow.leases")


@dataclass(eq=False)
class _Lease:
    """One block's lease: when to renew it next, and how many renewals it has left."""

    renew: Callable[[], bool]
    every: float
    left: int
    due: float
    # A renewal under way: the block's end waits for it, so none lands after the block.
    renewing: bool = False


class _Renewer:
    """The process's renewal thread and the leases it keeps, guarded by one condition."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.leases: set[_Lease] = set()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        # Whether the thread may hold a database connection, closed once no lease is left.
        self.connected = False

    def hold(self, lease: _Lease) -> None:
        with self.changed:
            if self.pid != os.getpid():  # forked: the parent's thread did not come along
                self.thread, self.pid, self.leases, self.connected = None, os.getpid(), set(), False
            self.leases.add(lease)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
                self.thread.start()
            self.changed.notify_all()

    def release(self, lease: _Lease) -> None:
        with self.changed:
            self.leases.discard(lease)
            while lease.renewing:
                self.changed.wait()
            if self.connected and not self.leases:
                self.changed.notify_all()  # the thread closes its connection now

    def _run(self) -> None:
        while True:
            for lease in self._due():
                self._renew(lease)

    def _due(self) -> list[_Lease]:
        """Wait until some lease is due; mark those as being renewed."""
        with self.changed:
            while True:
                now = time.monotonic()
                due = [lease for lease in self.leases if lease.due <= now]
                if due:
                    for lease in due:
                        lease.renewing = True
                    self.connected = True  # renewing may open this thread's connection
                    return due
                if not self.leases and self.connected:
                    connection.close()  # this thread's own connection
                    self.connected = False
                wait = min((lease.due for lease in self.leases), default=now + 60) - now
                self.changed.wait(wait)

    def _renew(self, lease: _Lease) -> None:
        with self.changed:
            held = lease in self.leases  # released since `_due` marked it: leave it
        try:
            kept = held and lease.renew()
        except Exception:  # the lease then runs out, which is safe
            logger.warning("renewing a lease failed", exc_info=True)
            connection.close()  # perhaps broken; the next renewal opens a new one
            kept = False
        with self.changed:
            lease.renewing = False
            lease.left -= 1
            lease.due = time.monotonic() + lease.every
            if not kept or lease.left <= 0:
                self.leases.discard(lease)
            self.changed.notify_all()


_renewer = _Renewer()


@contextmanager
def lease_renewed(renew: Callable[[], bool], *, every: float, longest: float) -> Iterator[None]:
    """Call `renew` every `every` seconds while the block runs, for `longest` seconds at most.

    `renew` returns False once the lease is lost (then renewing stops). It is
    called from the process's renewal thread, never after the block has ended.
    """
    lease = _Lease(renew, every, left=int(longest / every), due=time.monotonic() + every)
    if lease.left <= 0:
        yield
        return
    _renewer.hold(lease)
    try:
        yield
    finally:
        _renewer.release(lease)
