"""shopflow.local_work in process: what is kept, what is published, and when."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shopflow import local_work
from shopflow.local_work import keep_local, local_work_open, task_queue


@pytest.fixture
def worker_of(settings) -> Iterator[None]:
    """This process as a worker consuming the `events` and `saga` queues."""
    settings.WORKER_LOCAL_WORK = True
    settings.WORKER_LOCAL_WORK_SECONDS = 1.0
    local_work.worker_queues_set(frozenset({"events", "saga"}))
    yield
    local_work.worker_queues_set(None)


def _job(seen: list[str], name: str, error: Exception | None = None):
    def run() -> None:
        seen.append(f"ran {name}")
        if error:
            raise error

    return {"run": run, "publish": lambda: seen.append(f"published {name}")}


def test_kept_work_runs_after_the_body_in_order(worker_of):
    seen: list[str] = []
    with local_work.local_work():
        keep_local("events", **_job(seen, "a"))
        keep_local("saga", **_job(seen, "b"))
        seen.append("body ends")
    assert seen == ["body ends", "ran a", "ran b"]


def test_work_a_kept_job_hands_on_runs_in_the_same_scope(worker_of):
    seen: list[str] = []

    def first() -> None:
        seen.append("ran first")
        with local_work.local_work():  # a kept task body opens its own scope: it is the same
            keep_local("saga", **_job(seen, "second"))
        seen.append("first ends")

    with local_work.local_work():
        keep_local("events", run=first, publish=lambda: seen.append("published first"))
    assert seen == ["ran first", "first ends", "ran second"]


def test_a_queue_this_worker_does_not_consume_is_published_at_once(worker_of):
    seen: list[str] = []
    with local_work.local_work():
        keep_local("notifications", **_job(seen, "mail"))
        seen.append("body ends")
    assert seen == ["published mail", "body ends"]


@pytest.mark.parametrize("where", ["outside a task", "not a worker", "off"])
def test_without_local_work_everything_is_published(worker_of, settings, where):
    seen: list[str] = []
    if where == "outside a task":
        keep_local("events", **_job(seen, "a"))
    else:
        if where == "not a worker":
            local_work.worker_queues_set(None)
        else:
            settings.WORKER_LOCAL_WORK = False
        with local_work.local_work():
            keep_local("events", **_job(seen, "a"))
    assert seen == ["published a"]
    assert not local_work_open()


def test_work_past_the_budget_is_published(worker_of, settings):
    settings.WORKER_LOCAL_WORK_SECONDS = 0.0
    seen: list[str] = []
    with local_work.local_work():
        keep_local("events", **_job(seen, "a"))
    assert seen == ["published a"]


def test_a_failing_body_publishes_what_it_kept(worker_of):
    seen: list[str] = []
    with pytest.raises(RuntimeError), local_work.local_work():
        keep_local("events", **_job(seen, "a"))
        raise RuntimeError("the task failed")
    assert seen == ["published a"]
    assert not local_work_open()


def test_a_failing_job_is_published_and_the_next_still_runs(worker_of):
    seen: list[str] = []
    with local_work.local_work():
        keep_local("events", **_job(seen, "a", error=RuntimeError("boom")))
        keep_local("events", **_job(seen, "b"))
    assert seen == ["ran a", "published a", "ran b"]


def test_a_tasks_queue_comes_from_its_route(settings):
    assert task_queue("sagas.advance") == "saga"
    assert task_queue("no.such.task") == settings.CELERY_TASK_DEFAULT_QUEUE
