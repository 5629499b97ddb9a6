"""A cache Redis that accepts connections and never answers (hung, partitioned) stops no drain."""

import socket
import threading

import pytest
from django.db import connection, transaction

from outbox import relay
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cache_hung(settings):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes handshakes; nothing ever answers
    port = server.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "shopflow.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }
    yield
    server.close()


def test_a_drain_goes_on_while_the_cache_hangs(settings, cache_hung):
    settings.OUTBOX_WAKE_ON_COMMIT = False
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    done = threading.Event()

    def drain() -> None:
        try:
            relay.drain()
            done.set()
        finally:
            connection.close()

    threading.Thread(target=drain, daemon=True).start()
    assert done.wait(timeout=10), "drain blocked on the cache"
