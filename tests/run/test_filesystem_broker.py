"""The embedded default's broker: a message is never read before it is whole.

kombu's own filesystem transport writes a message in place, so a consumer that
polls at that moment reads it empty (kombu#1551) and a worker dies of it; run
against `"filesystem"` instead of `FilesystemTransport`, this test fails.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection

from shopflow.broker import FilesystemTransport

MESSAGES = 2000


def _channel(folder: Path) -> Any:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    options["control_folder"] = str(folder)
    return Connection(transport=FilesystemTransport, transport_options=options).default_channel


def test_a_consumer_polling_while_messages_are_published_reads_each_one_whole(tmp_path):
    # given: a publisher and a consumer on one queue folder, released together
    publisher, consumer = _channel(tmp_path), _channel(tmp_path)
    barrier = threading.Barrier(2)
    read: list[int] = []
    unreadable: list[Exception] = []

    def consume() -> None:
        barrier.wait()
        deadline = time.monotonic() + 60
        while len(read) + len(unreadable) < MESSAGES and time.monotonic() < deadline:
            try:
                read.append(consumer._get("q")["n"])
            except Empty:
                continue
            except Exception as exc:  # what kombu's own transport raises: JSONDecodeError
                unreadable.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    # when
    barrier.wait()
    for n in range(MESSAGES):
        publisher._put("q", {"n": n})
    reader.join(timeout=60)
    # then
    assert unreadable == []
    assert sorted(read) == list(range(MESSAGES))
