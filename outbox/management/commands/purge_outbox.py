"""`manage.py purge_outbox`: delete processed events and their inbox records past an age."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.services import outbox_purge


class Command(BaseCommand):
    help = (
        "Delete outbox events every handler has processed, and their delivery (inbox) "
        "records, once older than the retention period. Unfinished events are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="DAYS",
            help=f"age in whole days (default: the retention, {settings.OUTBOX_RETENTION_DAYS})",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = _days(options["older_than"])
        count = outbox_purge(older_than_days=days, dry_run=options["dry_run"])
        if options["dry_run"]:
            self.stdout.write(f"dry run: would purge {count} events older than {days} days")
        else:
            self.stdout.write(f"purged {count} events older than {days} days")


def _days(value: str | None) -> int:
    if value is None:
        return settings.OUTBOX_RETENTION_DAYS
    if not value.isdigit():
        raise CommandError(f"--older-than must be a whole number of days >= 0, not {value!r}")
    return int(value)
