"""Idempotency-Key on POST /api/orders/: replay, 422 on a changed body, 409 while in flight."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from orders.idempotency import (
    IdempotencyKeyInFlight,
    StoredResponse,
    idempotency_keys_purge,
    idempotent_call,
    request_fingerprint,
)
from orders.models import IdempotencyKey, Order
from tests.api.conftest import client_for, order_body, post_json
from tests.orders.factories import UserFactory

pytestmark = pytest.mark.django_db


def place(client, body=None, key="key-1"):
    return post_json(client, "/api/orders/", body or order_body(), HTTP_IDEMPOTENCY_KEY=key)


def test_the_same_key_and_body_replays_the_first_response(customer, mug):
    # given
    client = client_for(customer)
    first = place(client)

    # when
    again = place(client)

    # then
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1


def test_the_same_body_written_differently_is_still_the_same_request(customer, mug):
    client = client_for(customer)
    place(client)
    reordered = client.post(
        "/api/orders/",
        data='{ "shipping_address": {"country":"US","postal_code":"12345","city":"Springfield",'
        '"line1":"1 Main St","name":"Ada Lovelace"},  "payment_token":"tok_visa",'
        '"items":[{"quantity":2,"sku":"MUG-1"}]}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )

    assert reordered.status_code == 201
    assert reordered["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


def test_the_replay_is_the_first_response_even_after_the_order_moved_on(customer, mug):
    client = client_for(customer)
    first = place(client)
    post_json(client, f"/api/orders/{first.json()['id']}/cancel/", {})

    again = place(client)

    assert again.json()["status"] == "pending"
    assert again.content == first.content


def test_the_same_key_with_another_body_is_422(customer, mug):
    client = client_for(customer)
    place(client)

    response = place(client, order_body(payment_token="tok_other"))

    assert response.status_code == 422
    assert "detail" in response.json()
    assert Order.objects.count() == 1


def test_a_key_still_in_flight_is_409(customer, mug):
    # given a request holding the key right now
    IdempotencyKey.objects.create(
        user=customer,
        key="key-1",
        request_hash=request_fingerprint(order_body()),
        locked_at=timezone.now(),
    )

    # when
    response = place(client_for(customer))

    # then
    assert response.status_code == 409
    assert "detail" in response.json()
    assert not Order.objects.exists()


def test_a_key_abandoned_in_flight_is_taken_over(customer, mug, settings):
    # given a request that took the key and died long ago
    IdempotencyKey.objects.create(
        user=customer,
        key="key-1",
        request_hash=request_fingerprint(order_body()),
        locked_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_LOCK_SECONDS + 1),
    )

    # when
    response = place(client_for(customer))

    # then
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert IdempotencyKey.objects.get().completed_at is not None


def test_another_users_key_never_matches(customer, other_customer, mug):
    mine = place(client_for(customer))

    theirs = place(client_for(other_customer))

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert theirs.json()["id"] != mine.json()["id"]
    assert Order.objects.count() == 2


def test_without_a_key_every_request_places_an_order(customer, mug):
    client = client_for(customer)

    post_json(client, "/api/orders/", order_body())
    post_json(client, "/api/orders/", order_body())

    assert Order.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\tkey", "caf\u00e9", "line\nbreak", "\x7f"])
def test_a_malformed_key_is_a_400_and_nothing_is_stored(customer, mug, key):
    response = place(client_for(customer), key=key)

    assert response.status_code == 400
    assert "detail" in response.json()
    assert not Order.objects.exists()
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["k", "k" * 255, " !~ printable ASCII ~! ", "9f1c-4a"])
def test_any_printable_ascii_key_of_1_to_255_characters_is_taken(customer, mug, key):
    response = place(client_for(customer), key=key)

    assert response.status_code == 201
    assert IdempotencyKey.objects.get().key == key


def test_a_refused_request_stores_no_key_so_the_key_stays_free(customer, mug):
    client = client_for(customer)

    refused = place(client, order_body(items=[{"sku": "MUG-1", "quantity": 0}]))
    accepted = place(client, order_body(payment_token="tok_something_else"))

    assert refused.status_code == 400
    assert accepted.status_code == 201
    assert "Idempotent-Replayed" not in accepted


def test_a_key_past_its_retention_is_free_again(customer, mug, settings):
    # given a key completed longer ago than it is kept
    client = client_for(customer)
    place(client)
    IdempotencyKey.objects.update(
        completed_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS, minutes=1)
    )

    # when
    response = place(client, order_body(payment_token="tok_new"))

    # then
    assert response.status_code == 201
    assert Order.objects.count() == 2


def test_a_key_within_its_retention_still_replays(customer, mug, settings):
    client = client_for(customer)
    place(client)
    IdempotencyKey.objects.update(
        completed_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS - 1)
    )

    assert place(client)["Idempotent-Replayed"] == "true"


def test_purging_removes_only_completed_keys_past_their_retention(customer, settings):
    now = timezone.now()
    old = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS + 1)
    for key, completed_at in [("old", old), ("recent", now), ("in-flight", None)]:
        IdempotencyKey.objects.create(
            user=customer, key=key, request_hash="h", completed_at=completed_at
        )

    assert idempotency_keys_purge(now=now) == 1
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"recent", "in-flight"}


@pytest.mark.django_db(transaction=True)
def test_work_whose_key_was_taken_over_meanwhile_is_rolled_back():
    # given a call that, while it runs, loses its key to another request's takeover
    user = UserFactory()
    new_holder = uuid.uuid4()

    def take_over_elsewhere():
        IdempotencyKey.objects.filter(user=user, key="k").update(lock_id=new_holder)
        connection.close()

    def call_losing_the_key():
        UserFactory(username="written-by-the-call")
        thread = threading.Thread(target=take_over_elsewhere)
        thread.start()
        thread.join()
        return StoredResponse(201, "{}")

    # when
    with pytest.raises(IdempotencyKeyInFlight):
        idempotent_call(user=user, key="k", fingerprint="f", call=call_losing_the_key)

    # then its writes are gone and the new holder keeps the key
    assert not get_user_model().objects.filter(username="written-by-the-call").exists()
    assert IdempotencyKey.objects.get(user=user, key="k").lock_id == new_holder


def test_the_claim_commits_without_waiting_for_the_disk(customer):
    # given the claim run inside a transaction we can look into (the test's own)
    from orders.idempotency import _insert_claim

    # when
    pk = _insert_claim(user=customer, key="k", fingerprint="f", lock_id=uuid.uuid4())

    # then its statement turned synchronous_commit off for its transaction only
    assert IdempotencyKey.objects.get(pk=pk).response_headers == {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('synchronous_commit')")
        assert cursor.fetchone()[0] == "off"
