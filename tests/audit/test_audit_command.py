"""`manage.py audit`: a readable report, --json for machines, exit 0 when clean and 1 when not."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F

from inventory.models import Product
from shopflow.audit import CHECKS
from tests.conftest import ROOT, run_concurrently

pytestmark = pytest.mark.django_db


def audit(*args: str) -> tuple[str, CommandError | None]:
    """The command's output and the error it ended with, if any."""
    out = StringIO()
    try:
        call_command("audit", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_a_failure_is_reported_as_readable_lines_and_exits_1(shop):
    # given
    Product.objects.filter(sku="TEA-1").update(reserved=F("reserved") + 1)

    # when
    out, error = audit()

    # then
    lines = out.splitlines()
    assert lines[1] == (
        "FAILED  reserved_matches_reservations: every product's reserved = its active "
        "reservation lines (1 broken)"
    )
    assert lines[2] == "        product TEA-1: reserved 2, active reservation lines hold 1"
    assert lines[0] == "ok      stock_conserved"
    assert lines[-1] == f"1 of {len(CHECKS)} checks failed"
    assert (str(error), error.returncode) == (f"1 of {len(CHECKS)} checks failed", 1)


def test_a_long_list_is_cut_at_the_limit_and_says_how_many_more(shop):
    Product.objects.update(reserved=F("reserved") + 1)

    out, _ = audit("--limit", "1")

    assert "        ... and 1 more" in out.splitlines()


def test_json_has_every_check_with_its_problems(shop):
    Product.objects.filter(sku="TEA-1").update(reserved=F("reserved") + 1)

    out, error = audit("--json")

    document = json.loads(out)
    assert set(document) == {"ok", "total", "failed", "checks"}
    assert (document["ok"], document["total"], document["failed"]) == (False, len(CHECKS), 1)
    assert [c["name"] for c in document["checks"]] == [name for name, _, _ in CHECKS]
    broken = next(c for c in document["checks"] if not c["ok"])
    assert broken == {
        "name": "reserved_matches_reservations",
        "description": "every product's reserved = its active reservation lines",
        "ok": False,
        "count": 1,
        "problems": ["product TEA-1: reserved 2, active reservation lines hold 1"],
    }
    assert error.returncode == 1


def test_json_of_a_clean_shop_says_ok(shop):
    out, error = audit("--json")

    document = json.loads(out)
    assert error is None
    assert document["ok"] is True and document["failed"] == 0
    assert all(c["ok"] and c["problems"] == [] for c in document["checks"])


def test_verbose_lists_every_check_before_the_summary(shop):
    out, _ = audit("-v", "2")

    assert out.splitlines() == [f"ok      {name}" for name, _, _ in CHECKS] + [
        f"all {len(CHECKS)} checks passed"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-pending-age", "-1"], "--max-pending-age must be a number of seconds >= 0"),
        (["--max-pending-age", "nan"], "--max-pending-age must be a number of seconds >= 0"),
        (["--saga-grace", "soon"], "--saga-grace must be a number of seconds >= 0"),
        (["--limit", "x"], "--limit must be a whole number >= 0"),
    ],
)
def test_bad_options_are_refused_in_one_line(shop, args, message):
    _, error = audit(*args)

    assert str(error).startswith(message)
    assert "\n" not in str(error)


def run_audit() -> subprocess.CompletedProcess:
    db = connection.settings_dict
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
    )
    return subprocess.run(
        [sys.executable, "manage.py", "audit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def committed(change: int) -> None:
    """Change MUG-1's stock on a connection of its own: committed, seen by a subprocess."""
    run_concurrently(
        1, lambda: Product.objects.filter(sku="MUG-1").update(on_hand=F("on_hand") + change)
    )


def test_the_process_exits_0_when_clean_and_1_with_a_one_line_reason_when_not(shop):
    # given a clean shop
    clean = run_audit()

    # when a product's stock is broken
    committed(+1)
    try:
        broken = run_audit()
    finally:
        committed(-1)

    # then
    assert (clean.returncode, clean.stdout.strip()) == (0, f"all {len(CHECKS)} checks passed")
    assert broken.returncode == 1
    assert "product MUG-1: on_hand 18, expected 17" in broken.stdout
    assert broken.stderr.strip() == f"CommandError: 1 of {len(CHECKS)} checks failed"
