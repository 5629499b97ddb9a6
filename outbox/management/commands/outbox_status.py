"""`manage.py outbox_status`: backlog, lag, dead letters and blocked aggregates per handler."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.selectors import BlockedAggregate, OutboxStats, blocked_aggregates, outbox_stats


class Command(BaseCommand):
    help = (
        "Show the outbox backlog: pending deliveries, the oldest one's age, dead letters (and "
        "how many died with their worker) and the aggregates each handler is blocked on "
        "(naming the blocking event)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--limit", metavar="N", help="blocked aggregates to list (default 20)")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = _limit(options["limit"])
        stats = outbox_stats()
        blocked = blocked_aggregates(limit=limit)
        if options["json"]:
            document = {**stats.as_dict(), "blocked": [dataclasses.asdict(b) for b in blocked]}
            self.stdout.write(json.dumps(document, sort_keys=True))
            return
        for line in [*_summary(stats), *_blocked(blocked, stats)]:
            self.stdout.write(line)


def _limit(value: str | None) -> int:
    if value is None:
        return 20
    if not value.isdigit():
        raise CommandError(f"--limit must be a whole number >= 0, not {value!r}")
    return int(value)


def _summary(stats: OutboxStats) -> list[str]:
    age = "-" if stats.oldest_pending_age is None else f"{stats.oldest_pending_age:.1f}s"
    lines = [
        f"pending: {stats.pending}  oldest pending: {age}  dead: {stats.dead} "
        f"(died in worker: {stats.died_in_worker})  blocked aggregates: {stats.blocked_aggregates}",
        "",
        f"{'handler':<40} {'pending':>8} {'oldest':>9} {'dead':>6} {'blocked':>8}",
    ]
    for name, h in stats.handlers.items():
        oldest = "-" if h.oldest_pending_age is None else f"{h.oldest_pending_age:.1f}s"
        lines.append(f"{name:<40} {h.pending:>8} {oldest:>9} {h.dead:>6} {h.blocked_aggregates:>8}")
    return lines


def _blocked(blocked: list[BlockedAggregate], stats: OutboxStats) -> list[str]:
    if not blocked:
        return []
    lines = ["", f"blocked aggregates (first {len(blocked)} of {stats.blocked_aggregates}):"]
    for b in blocked:
        error = b.last_error.splitlines()[0][:120] if b.last_error else "no error recorded"
        lines.append(
            f"  {b.handler} on {b.aggregate_key}: blocked by event #{b.event_pk} {b.event_type} "
            f"({b.event_id}), {b.waiting} waiting; {error}"
        )
    return lines
