"""`manage.py rebuild_analytics`: empty the daily sales projection, rebuild it from the outbox."""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from analytics.services import analytics_rebuild, analytics_rebuild_pending
from outbox.replay import ReplayRefused


class Command(BaseCommand):
    help = (
        "Empty the daily sales projection and replay every event it is built from through "
        "the outbox (events past the outbox retention are gone and cannot count)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait up to SECONDS for the workers to finish the rebuild (default: don't wait)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        wait = options["wait"]
        # `not >= 0` refuses nan too, which argparse's float accepts and no deadline compares to.
        if not (wait >= 0 and math.isfinite(wait)):
            raise CommandError(
                f"--wait must be a finite number of seconds, zero or more, not {wait:g}"
            )
        with tqdm(unit="event", file=self.stderr._out, delay=1.0, disable=None, leave=False) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                summary = analytics_rebuild(progress=advance)
            except ReplayRefused as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"analytics reset; {summary}")
        if options["wait"]:
            self._wait(options["wait"])

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := analytics_rebuild_pending()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            raise CommandError(f"{left} analytics deliveries still pending after {seconds:g} s")
        self.stdout.write("rebuild finished")
