"""`manage.py replay_outbox`: hand selected events to their handlers again, through the inbox."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from outbox.registry import UnknownHandler
from outbox.replay import EventsTooOld, ReplayRefused, events_replay
from outbox.selectors import EventSelection, InvalidSelection


class Command(BaseCommand):
    help = (
        "Replay outbox events through the relay, respecting the inbox: done deliveries are "
        "skipped, dead ones requeued, missing ones created. Needs at least one selector."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        select = parser.add_argument_group("selectors (combined with AND; repeated values OR)")
        select.add_argument(
            "--id",
            action="append",
            default=[],
            metavar="ID",
            help="event id (number) or event UUID; repeatable",
        )
        select.add_argument("--from-id", metavar="ID", help="events with id >= ID")
        select.add_argument("--to-id", metavar="ID", help="events with id <= ID")
        select.add_argument(
            "--type",
            action="append",
            default=[],
            metavar="TYPE",
            help="event type, e.g. order.created; repeatable",
        )
        select.add_argument(
            "--aggregate",
            action="append",
            default=[],
            metavar="TYPE:ID",
            help="events of one aggregate, e.g. order:42; repeatable",
        )
        select.add_argument(
            "--since", metavar="WHEN", help="events created at or after WHEN (ISO date or datetime)"
        )
        select.add_argument(
            "--until",
            metavar="WHEN",
            help="events created before WHEN (a date includes that whole day)",
        )
        select.add_argument("--status", metavar="dead", help="only events with a dead delivery")
        parser.add_argument("--handler", metavar="NAME", help="replay for this handler only")
        parser.add_argument(
            "--reprocess",
            action="store_true",
            help="re-run replayable handlers (projections) that already handled the events",
        )
        parser.add_argument(
            "--force", action="store_true", help="allow events older than the retention period"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would happen and change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        selection = _selection(options)
        with tqdm(unit="event", file=self.stderr._out, delay=1.0, disable=None, leave=False) as bar:
            try:
                summary = events_replay(
                    selection,
                    handler=options["handler"],
                    reprocess=options["reprocess"],
                    force=options["force"],
                    dry_run=options["dry_run"],
                    progress=lambda done, total: _advance(bar, done, total),
                )
            except EventsTooOld as exc:
                raise CommandError(f"{exc}; use --force to replay them anyway") from exc
            except (ReplayRefused, UnknownHandler) as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(str(summary))


def _advance(bar: tqdm, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def _selection(options: dict[str, Any]) -> EventSelection:
    ids = [_event_id(value) for value in options["id"]]
    status = options["status"]
    if status not in (None, "dead"):
        raise CommandError(f"--status must be 'dead', not {status!r}")
    try:
        return EventSelection(
            ids=tuple(i for i in ids if isinstance(i, int)),
            event_ids=tuple(i for i in ids if isinstance(i, uuid.UUID)),
            from_id=_number("--from-id", options["from_id"]),
            to_id=_number("--to-id", options["to_id"]),
            types=tuple(options["type"]),
            aggregates=tuple(_aggregate(value) for value in options["aggregate"]),
            since=_when("--since", options["since"], end_of_day=False),
            until=_when("--until", options["until"], end_of_day=True),
            dead_only=status == "dead",
        )
    except InvalidSelection as exc:
        raise CommandError(str(exc)) from exc


def _event_id(value: str) -> int | uuid.UUID:
    if value.isdigit():
        return int(value)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(f"--id {value!r} is neither an event number nor a UUID") from None


def _number(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise CommandError(f"{flag} must be a positive event id, not {value!r}")
    return int(value)


def _aggregate(value: str) -> tuple[str, str]:
    aggregate_type, _, aggregate_id = value.partition(":")
    if not aggregate_type or not aggregate_id:
        raise CommandError(f"--aggregate must look like TYPE:ID, not {value!r}")
    return aggregate_type, aggregate_id


def _when(flag: str, value: str | None, *, end_of_day: bool) -> datetime | None:
    """An aware datetime from an ISO date or datetime; naive values are in TIME_ZONE."""
    if value is None:
        return None
    try:
        # Date first: parse_datetime would read a bare date as midnight.
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time.min)
    if moment is None:
        raise CommandError(f"{flag} must be an ISO date or datetime, not {value!r}")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
