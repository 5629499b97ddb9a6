"""The outbox commands as a shell runs them: exit codes, one-line errors, Ctrl-C."""

import json
import signal
import subprocess
import sys

import pytest
from django.db import transaction

from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.conftest import ROOT, wait_until
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)

COMMANDS = ("drain_outbox", "outbox_status", "replay_outbox", "purge_outbox")


@pytest.fixture(autouse=True)
def no_wake_up(settings):
    settings.OUTBOX_WAKE_ON_COMMIT = False


@pytest.fixture
def dead_letter() -> OutboxEvent:
    """One event whose probe.record delivery is dead and whose projection is done."""
    with transaction.atomic():
        [event] = events_record([ProbeHappened(aggregate="a1", seq=1)])
    Delivery.objects.filter(event=event).update(status="done")
    Delivery.objects.filter(event=event, handler="probe.record").update(
        status="dead", attempts=4, last_error="RuntimeError: probe failure on attempt 4"
    )
    return event


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def delivery_rows() -> list[tuple]:
    return list(Delivery.objects.order_by("id").values_list("id", "status", "attempts"))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself_with_help(worker_env, command):
    # when
    result = manage(worker_env, command, "--help")
    # then
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: manage.py {command}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("drain_outbox", "--interval", "-1"), "--interval must be a positive number"),
        (("outbox_status", "--limit", "ten"), "--limit must be a whole number"),
        (("replay_outbox",), "select the events to replay"),
        (("replay_outbox", "--since", "2025-13-01"), "--since must be an ISO date"),
        (("replay_outbox", "--from-id", "9", "--to-id", "3"), "from-id 9 is after to-id 3"),
        (("replay_outbox", "--status", "dead", "--handler", "nobody"), "no handler named"),
        (("replay_outbox", "--type", "probe.gone"), "unknown event type probe.gone"),
        (("replay_outbox", "--status", "dead", "--reprocess"), "probe.record"),
        (("purge_outbox", "--older-than", "-3"), "--older-than must be a whole number"),
    ],
)
def test_bad_input_exits_non_zero_with_a_one_line_reason_and_changes_nothing(
    worker_env, dead_letter, args, message
):
    # given
    before = delivery_rows()
    # when
    result = manage(worker_env, *args)
    # then
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: ") and message in line
    assert delivery_rows() == before
    assert OutboxEvent.objects.count() == 1


def test_replay_outbox_requeues_dead_letters_and_prints_one_summary_line(worker_env, dead_letter):
    # when
    result = manage(worker_env, "replay_outbox", "--status", "dead")
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1 events: 1 requeued, 0 created, 1 skipped (already done), 0 reprocessed, "
        "0 already pending"
    ]
    assert Delivery.objects.get(event=dead_letter, handler="probe.record").status == "pending"


def test_outbox_status_json_is_one_json_object(worker_env, dead_letter):
    # when
    result = manage(worker_env, "outbox_status", "--json")
    # then
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    status = json.loads(line)
    assert status["dead"] == 1
    assert status["blocked"][0]["event_pk"] == dead_letter.pk


def test_drain_outbox_loop_drains_until_ctrl_c_and_exits_cleanly(worker_env):
    # given
    loop = subprocess.Popen(
        [sys.executable, "manage.py", "drain_outbox", "--loop", "--interval", "0.1"],
        cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert loop.stdout.readline().startswith("draining every 0.1s")
    with transaction.atomic():
        [event] = events_record([ProbeHappened(aggregate="a1", seq=1)])
    leased = Delivery.objects.filter(event=event, lease_id__isnull=False)
    assert wait_until(lambda: leased.count() == 2, timeout=20)
    # when
    loop.send_signal(signal.SIGINT)
    stdout, stderr = loop.communicate(timeout=15)
    # then
    assert loop.returncode == 0, stderr
    assert "published 2 deliveries" in stdout
    assert stdout.splitlines()[-1].startswith("stopped after ")
    assert stderr == ""
