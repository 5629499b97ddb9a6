"""`manage.py drain_outbox`: publish due deliveries to the workers, once or in a loop."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.relay import drain
from outbox.selectors import OutboxStats, outbox_stats


class Command(BaseCommand):
    help = (
        "Claim due outbox deliveries and publish them to the worker queues, then print "
        "what is left. With --loop, keep draining until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep draining in the foreground")
        parser.add_argument(
            "--interval",
            metavar="SECONDS",
            help=f"pause between drains with --loop (default {settings.OUTBOX_POLL_INTERVAL})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = _interval(options["interval"])
        if not options["loop"]:
            published = drain()
            self.stdout.write(f"published {published} deliveries; {_backlog(outbox_stats())}")
            return
        self.stdout.write(f"draining every {interval}s; Ctrl-C to stop")
        rounds, published = self._loop(interval)
        self.stdout.write(
            f"stopped after {rounds} drains: published {published} deliveries; "
            f"{_backlog(outbox_stats())}"
        )

    def _loop(self, interval: float) -> tuple[int, int]:
        rounds = published = 0
        with _stop_on_signals() as stop:
            while not stop.is_set():
                count = drain()
                rounds, published = rounds + 1, published + count
                if count:
                    self.stdout.write(f"published {count} deliveries")
                stop.wait(interval)
        return rounds, published


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Turn Ctrl-C and SIGTERM into a flag, so the drain in progress finishes its batch.

    A second Ctrl-C interrupts at once; leased deliveries come back when their lease expires.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interval(value: str | None) -> float:
    if value is None:
        return settings.OUTBOX_POLL_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise CommandError(f"--interval must be a positive number of seconds, not {value!r}")
    return seconds


def _backlog(stats: OutboxStats) -> str:
    age = "" if stats.oldest_pending_age is None else f" (oldest {stats.oldest_pending_age:.1f}s)"
    return f"{stats.pending} pending{age}, {stats.dead} dead"
