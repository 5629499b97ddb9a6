"""Counters written in worker processes reach the web process's /metrics scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from outbox.metrics import multiprocess_dir_prune, multiprocess_enabled
from outbox.services import events_record
from outbox.tasks import drain_outbox
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

PROBE = "probe.happened"


def _scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def _deliveries(client, **labels: str) -> float:
    samples = _scrape(client).get("shopflow_outbox_deliveries", [])
    return sum(
        s.value
        for s in samples
        if s.name == "shopflow_outbox_deliveries_total" and labels.items() <= s.labels.items()
    )


def _relay_claimed(client) -> float:
    samples = _scrape(client)["shopflow_outbox_relay_claimed"]
    return sum(s.value for s in samples if s.name == "shopflow_outbox_relay_claimed_total")


def _drained_until(done: Callable[[], bool]) -> bool:
    """Ask a worker to drain (no beat runs here, so retries wait for one) and check `done`."""
    drain_outbox.apply_async()
    return done()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def _sample_file(directory: Path, pid: int, value: float = 0.0) -> Path:
    """A counter file as prometheus_client writes it for `pid`, holding `value`.

    Never for this process's pid: its own metrics keep that file mapped.
    """
    path = directory / f"counter_{pid}.db"
    samples = MmapedDict(str(path))
    key = mmap_key("shopflow_test", "shopflow_test_total", [], [], "A test counter.")
    samples.write_value(key, value, 0.0)
    samples.close()
    return path


def test_test_run_writes_metrics_to_its_own_directory():
    # then
    assert multiprocess_enabled()
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).name.startswith("shopflow-metrics-")


@pytest.mark.django_db(transaction=True)
def test_deliveries_counted_in_worker_processes_show_in_the_web_scrape(client, start_worker):
    # given
    start_worker(concurrency=2)
    done_before = _deliveries(client, handler="probe.record", event_type=PROBE, outcome="done")
    retries_before = _deliveries(client, handler="probe.record", event_type=PROBE, outcome="retry")
    claimed_before = _relay_claimed(client)
    # when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate=f"m{seq}", seq=seq) for seq in range(3)])
        events_record([ProbeHappened(aggregate="m-flaky", seq=0, fail_times=1)])
    # then
    assert wait_until(lambda: _drained_until(lambda: ProbeRecord.objects.count() == 8), 30, 0.2)
    assert os.getpid() not in set(ProbeRecord.objects.values_list("pid", flat=True))
    assert wait_until(
        lambda: (
            _deliveries(client, handler="probe.record", event_type=PROBE, outcome="done")
            == done_before + 4
        ),
        timeout=10,
    )
    retries = _deliveries(client, handler="probe.record", event_type=PROBE, outcome="retry")
    assert retries == retries_before + 1
    assert _deliveries(client, handler="probe.projection", outcome="retry") >= 1
    assert _relay_claimed(client) >= claimed_before + 10


def test_prune_deletes_the_files_of_dead_processes_only(tmp_path):
    # given
    dead = _sample_file(tmp_path, _dead_pid())
    alive = _sample_file(tmp_path, os.getppid())
    unrelated = tmp_path / "notes.db"
    unrelated.write_bytes(b"")
    # when
    removed = multiprocess_dir_prune(tmp_path)
    # then
    assert removed == 1
    assert not dead.exists()
    assert alive.exists()
    assert unrelated.exists()


def test_scrape_time_prune_keeps_every_file_that_holds_a_count(tmp_path):
    # given
    dead_empty = _sample_file(tmp_path, _dead_pid())
    dead_counted = _sample_file(tmp_path, _dead_pid(), value=5)
    alive_empty = _sample_file(tmp_path, os.getppid())
    # when
    removed = multiprocess_dir_prune(tmp_path, only_zeros=True)
    # then
    assert removed == 1
    assert not dead_empty.exists()
    assert dead_counted.exists()
    assert alive_empty.exists()


@pytest.mark.django_db(transaction=True)
def test_a_scrape_forgets_dead_processes_that_counted_nothing(client):
    # given
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    dead_empty = _sample_file(directory, _dead_pid())
    # when
    response = client.get("/metrics")
    # then
    assert response.status_code == 200
    assert not dead_empty.exists()


@pytest.mark.django_db(transaction=True)
def test_a_starting_worker_prunes_the_files_of_dead_processes(start_worker):
    # given
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    dead = _sample_file(directory, _dead_pid(), value=5)
    alive = _sample_file(directory, os.getppid())
    # when
    start_worker(concurrency=1)
    # then
    assert not dead.exists()
    assert alive.exists()
