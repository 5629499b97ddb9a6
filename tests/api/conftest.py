"""Fixtures for the API tests: clients for each kind of caller, a small catalog."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.inventory.factories import ProductFactory
from tests.orders.factories import UserFactory

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


def order_body(**overrides: Any) -> dict[str, Any]:
    """A valid placement body (two mugs), with top-level fields replaced."""
    body = {
        "items": [{"sku": "MUG-1", "quantity": 2}],
        "payment_token": "tok_visa",
        "shipping_address": dict(ADDRESS),
    }
    body.update(overrides)
    return body


def client_for(user: Any = None) -> APIClient:
    """A client sending the user's token, or an anonymous one."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def post_json(client: APIClient, url: str, body: Any, **extra: Any) -> Any:
    """POST `body` as JSON text; escapes lone surrogates the way a client's encoder would."""
    return client.post(url, data=json.dumps(body), content_type="application/json", **extra)


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no request history, so throttles never leak between tests."""
    cache = LocMemCache(f"throttle-{uuid.uuid4()}", {})  # LocMemCaches share data by name
    monkeypatch.setattr(SimpleRateThrottle, "cache", cache)


@pytest.fixture
def customer(db: None) -> Any:
    return UserFactory(username="ada")


@pytest.fixture
def other_customer(db: None) -> Any:
    return UserFactory(username="grace")


@pytest.fixture
def staff(db: None) -> Any:
    return UserFactory(username="operator", is_staff=True)


@pytest.fixture
def mug(db: None) -> Any:
    return ProductFactory(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)


@pytest.fixture
def tea(db: None) -> Any:
    return ProductFactory(sku="TEA-1", name="Tea", price=Decimal("4.50"), on_hand=10)
