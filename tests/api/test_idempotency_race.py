"""Fifty clients sending one Idempotency-Key at the same moment get one order between them."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rest_framework.authtoken.models import Token

from orders.models import IdempotencyKey, Order
from tests.api.conftest import order_body

CLIENTS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_requests_with_one_key_place_one_order(live_server, customer, mug):
    # given fifty clients of one customer, each on its own connection to a threaded server
    token = Token.objects.create(user=customer).key
    barrier = threading.Barrier(CLIENTS)
    connecting = threading.Lock()

    def place(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            # Connect one by one (the test server's listen backlog is 10) and keep the
            # connection alive, so the barrier releases fifty ready requests, not SYNs.
            with connecting:
                assert client.get("/api/products/").status_code == 200
            barrier.wait(timeout=60)
            return client.post(
                "/api/orders/",
                json=order_body(),
                headers={"Authorization": f"Token {token}", "Idempotency-Key": "race-1"},
            )

    # when they all send the same key and body at once
    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(place, range(CLIENTS)))

    # then exactly one placed the order; every other one is a 409 or a faithful replay
    assert Order.objects.count() == 1
    placed = [
        r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(placed) == 1
    for response in responses:
        if response is placed[0]:
            continue
        if response.status_code == 201:
            assert response.headers["Idempotent-Replayed"] == "true"
            assert response.content == placed[0].content
        else:
            assert response.status_code == 409, response.text
    assert IdempotencyKey.objects.get().completed_at is not None
