"""Schemathesis against /api/schema/: no operation answers 5xx or leaves its documented shape.

Every operation in the OpenAPI schema gets generated requests (valid and
invalid) from a customer and from a staff user, through the Django WSGI app.
Bounded to 20 examples per operation so the module runs in under two
minutes; whatever it finds becomes a plain regression test in
tests/fuzz/test_fuzz_findings.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from shopflow.wsgi import application
from tests.inventory.factories import ProductFactory
from tests.orders.factories import UserFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
CHECKS = [not_a_server_error, response_schema_conformance]
BOUNDED = settings(
    # A deeper local hunt: SHOPFLOW_FUZZ_EXAMPLES=500 pytest tests/fuzz
    max_examples=int(os.environ.get("SHOPFLOW_FUZZ_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)  # fmt: skip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_throttle_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throttle history per test, so the fuzzer's request rate never decides an answer."""
    cache = LocMemCache(f"fuzz-throttle-{uuid.uuid4()}", {})
    monkeypatch.setattr(SimpleRateThrottle, "cache", cache)
    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)


@pytest.fixture(autouse=True)
def connection_kept_between_requests() -> Iterator[None]:
    """Keep the test's transaction open across requests, as Django's own test client does.

    The WSGI handler closes "old" connections at each request's start and end,
    and inside the test's transaction the connection always looks old.
    """
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def catalog(db: None) -> None:
    ProductFactory(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)


def token_headers(**user: Any) -> dict[str, str]:
    token, _ = Token.objects.get_or_create(user=UserFactory(**user))
    return {"Authorization": f"Token {token.key}"}


@schema.parametrize()
@BOUNDED
def test_a_customer_never_gets_a_5xx_or_an_off_schema_answer(case, catalog):
    response = case.call(headers=token_headers(username="fuzz-customer"))

    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@BOUNDED
def test_staff_never_get_a_5xx_or_an_off_schema_answer(case, catalog):
    response = case.call(headers=token_headers(username="fuzz-staff", is_staff=True))

    case.validate_response(response, checks=CHECKS)
