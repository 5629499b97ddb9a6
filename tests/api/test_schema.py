"""The OpenAPI schema at /api/schema/ describes the API without warnings."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

ROUTES = [
    "/api/auth/register/",
    "/api/auth/token/",
    "/api/products/",
    "/api/products/{sku}/",
    "/api/products/{sku}/restock/",
    "/api/orders/",
    "/api/orders/{order_id}/",
    "/api/orders/{order_id}/events/",
    "/api/orders/{order_id}/cancel/",
]


def test_the_schema_generates_and_validates_with_warnings_as_errors(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))

    assert "/api/orders/{order_id}/cancel/" in target.read_text()


def test_the_schema_is_served_and_lists_every_route(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert set(ROUTES) <= set(schema["paths"])
    order = schema["components"]["schemas"]["OrderOutput"]
    assert set(order["properties"]) == {
        "id", "number", "status", "items", "total", "currency", "shipping_address",
        "payment", "shipment", "cancel_reason", "failure_reason", "created_at", "updated_at",
    }  # fmt: skip
    placement = schema["paths"]["/api/orders/"]["post"]
    assert {p["name"] for p in placement["parameters"]} == {"Idempotency-Key"}
    assert {"201", "400", "409", "422"} <= set(placement["responses"])
