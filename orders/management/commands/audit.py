"""`manage.py audit`: check ShopFlow's invariants; exit 1 naming every case that breaks one."""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shopflow.audit import AuditReport, CheckResult, audit_run


class Command(BaseCommand):
    help = (
        "Check the invariants that hold once ShopFlow is quiet: stock conservation, what "
        "failed, cancelled, confirmed and shipped orders hold, the gateway's ledger, stuck "
        "events, unacknowledged dead letters, stuck sagas and customer e-mails. Exits 0 when "
        "every check passes, 1 with a line per broken case otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--max-pending-age",
            metavar="SECONDS",
            help="how long a delivery may stay pending (default AUDIT_MAX_PENDING_SECONDS, "
            f"{settings.AUDIT_MAX_PENDING_SECONDS:g})",
        )
        parser.add_argument(
            "--saga-grace",
            metavar="SECONDS",
            help="how far past its lease or wake-up an active saga may be (default "
            f"AUDIT_SAGA_GRACE_SECONDS, {settings.AUDIT_SAGA_GRACE_SECONDS:g})",
        )
        parser.add_argument(
            "--limit", metavar="N", help="problems listed per check (default 20; all counted)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_run(
            max_pending_age=_seconds("--max-pending-age", options["max_pending_age"]),
            saga_lease_grace=_seconds("--saga-grace", options["saga_grace"]),
            limit=_limit(options["limit"]),
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            for line in _text(report, verbose=options["verbosity"] > 1):
                self.stdout.write(line)
        if not report.ok:
            raise CommandError(
                f"{len(report.failed)} of {len(report.checks)} checks failed", returncode=1
            )


def _seconds(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise CommandError(f"{option} must be a number of seconds >= 0, not {value!r}")
    return seconds


def _limit(value: str | None) -> int:
    if value is None:
        return 20
    if not value.isdigit():
        raise CommandError(f"--limit must be a whole number >= 0, not {value!r}")
    return int(value)


def _text(report: AuditReport, *, verbose: bool) -> list[str]:
    if report.ok:
        lines = [f"ok      {c.name}" for c in report.checks] if verbose else []
        return [*lines, f"all {len(report.checks)} checks passed"]
    lines = []
    for result in report.checks:
        if result.ok:
            lines.append(f"ok      {result.name}")
        else:
            lines.extend(_failure(result))
    lines.append(f"{len(report.failed)} of {len(report.checks)} checks failed")
    return lines


def _failure(result: CheckResult) -> list[str]:
    lines = [f"FAILED  {result.name}: {result.description} ({result.count} broken)"]
    lines.extend(f"        {problem}" for problem in result.problems)
    if result.count > len(result.problems):
        lines.append(f"        ... and {result.count - len(result.problems)} more")
    return lines
