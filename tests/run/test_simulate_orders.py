"""`manage.py simulate_orders`: refuses bad input in one line, and its summary of a real
run against a live server and real workers matches what the database holds."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from inventory.services import product_create
from orders.models import Order
from tests.conftest import ROOT

MIX = "visa=40,declined=15,flaky=15,down=10,aq=10,cancel=10"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mix", "visa=90,declined=5"], "--mix percentages add up to 95, not 100"),
        (["--mix", "visa=95,bitcoin=5"], "unknown --mix key 'bitcoin'"),
        (["--mix", "visa=50,visa=50"], "--mix names 'visa' twice"),
        (["--mix", "visa=eighty"], "--mix entries look like key=percent, not 'visa=eighty'"),
        (["--count", "0"], "--count must be a whole number above 0, not '0'"),
        (["--count", "-5"], "--count must be a whole number above 0, not '-5'"),
        (["--count", "2.5"], "--count must be a whole number above 0, not '2.5'"),
        (["--rate", "0"], "--rate must be a number above 0, not '0'"),
        (["--rate", "-1"], "--rate must be a number above 0, not '-1'"),
        (["--rate", "inf"], "--rate must be a number above 0, not 'inf'"),
        (["--url", "localhost:8000"], "--url must be an http(s) URL"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(args, message):
    # when
    with pytest.raises(CommandError) as refused:
        call_command("simulate_orders", *args)
    # then
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_server_that_does_not_answer_is_refused_in_one_line():
    # given
    url = f"http://127.0.0.1:{_closed_port()}"
    # when
    with pytest.raises(CommandError) as refused:
        call_command("simulate_orders", "--url", url)
    # then
    assert str(refused.value).startswith(f"{url} does not answer")
    assert "\n" not in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_bad_credentials_are_refused_in_one_line(live_server):
    # given
    get_user_model().objects.create_user("ada", "ada@example.com", "right-password-1")
    # when
    with pytest.raises(CommandError) as refused:
        call_command(
            "simulate_orders", "--url", live_server.url, "--username", "ada", "--password", "nope"
        )
    # then
    assert str(refused.value) == (
        "cannot log in as 'ada': Unable to log in with provided credentials."
    )


@pytest.mark.django_db(transaction=True)
def test_a_bad_token_is_refused_in_one_line(live_server):
    # when
    with pytest.raises(CommandError) as refused:
        call_command("simulate_orders", "--url", live_server.url, "--token", "0" * 40)
    # then
    assert str(refused.value) == f"the token is not accepted at {live_server.url} (401)"


def test_from_the_command_line_a_bad_argument_is_one_line_on_stderr_and_exit_code_1():
    # when
    done = subprocess.run(
        [sys.executable, "manage.py", "simulate_orders", "--mix", "visa=99"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # then
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["CommandError: --mix percentages add up to 99, not 100"]
    assert done.stdout == ""


@pytest.mark.django_db(transaction=True)
def test_the_summary_of_a_real_run_counts_what_the_database_holds(live_server, start_worker):
    # given: a live server, a worker and a beat (retries and the watchdog need it)
    start_worker(beat=True)
    for sku in ("MUG-1", "TEE-1", "CAP-1"):
        product_create(sku=sku, name=f"Demo {sku}", price=Decimal("9.90"), stock=500)
    get_user_model().objects.create_user("sim", "sim@example.com", "sim-password-1")
    out = StringIO()
    # when
    call_command(
        "simulate_orders", "--url", live_server.url, "--count", "20", "--rate", "20",
        "--mix", MIX, "--username", "sim", "--password", "sim-password-1", "--seed", "3",
        "--timeout", "90", stdout=out,
    )  # fmt: skip
    # then: every order settled as its sandbox behaviour says, in the mix's exact shares
    summary = out.getvalue()
    assert _table(summary) == {
        ("confirmed", ""): 11,  # visa 8, flaky 3
        ("failed", "payment_declined"): 3,
        ("failed", "payment_unavailable"): 2,
        ("failed", "shipping_unavailable"): 2,
        ("cancelled", "simulate_orders"): 2,
    }
    # and: the summary is the database's own count
    held = Order.objects.values_list("status", "failure_reason", "cancel_reason")
    assert _table(summary) == Counter(
        (status, failed or cancelled) for status, failed, cancelled in held
    )
    assert summary.startswith("placed 20 of 20 orders in ")
    assert re.search(r"saga duration \(placed -> settled\): p50 [0-9.]+ s, p99 [0-9.]+ s", summary)
    assert re.search(r"throughput: [0-9.]+ orders/s settled \(20 between", summary)


def _table(summary: str) -> Counter[tuple[str, str]]:
    """(status, reason) -> orders, read from the summary's table."""
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("status "))
    rows: Counter[tuple[str, str]] = Counter()
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        status, reason, count = re.split(r"\s{2,}", line.strip())
        rows[(status, "" if reason == "-" else reason)] = int(count)
    return rows
