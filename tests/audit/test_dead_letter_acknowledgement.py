"""Operators acknowledge dead letters in the admin; the audit then stops reporting them."""

import pytest
from django.urls import reverse
from django.utils import timezone

from outbox.models import Delivery
from shopflow.audit import audit_run

pytestmark = pytest.mark.django_db


def acknowledge(client, deliveries) -> object:
    data = {"action": "acknowledge_dead_letters",
            "_selected_action": [str(d.pk) for d in deliveries]}  # fmt: skip
    return client.post(reverse("admin:outbox_delivery_changelist"), data, follow=True)


def dead_letters_reported() -> int:
    return next(c.count for c in audit_run().checks if c.name == "no_unacknowledged_dead_letters")


def test_the_admin_action_acknowledges_only_dead_letters(shop, admin_client):
    # given one dead letter and one done delivery
    dead, done = Delivery.objects.order_by("id")[:2]
    Delivery.objects.filter(pk=dead.pk).update(status="dead", next_attempt_at=timezone.now())
    assert dead_letters_reported() == 1

    # when
    response = acknowledge(admin_client, [dead, done])

    # then
    assert "Acknowledged 1 dead letters." in response.content.decode()
    assert Delivery.objects.get(pk=dead.pk).acknowledged_at is not None
    assert Delivery.objects.get(pk=done.pk).acknowledged_at is None
    assert dead_letters_reported() == 0


def test_staff_without_the_change_permission_cannot_acknowledge(shop, client, django_user_model):
    # given a staff member who may only view deliveries
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(*_permissions("view_delivery", "view_outboxevent"))
    client.force_login(viewer)
    dead = Delivery.objects.order_by("id").first()
    Delivery.objects.filter(pk=dead.pk).update(status="dead", next_attempt_at=timezone.now())

    # when
    acknowledge(client, [dead])

    # then
    assert Delivery.objects.get(pk=dead.pk).acknowledged_at is None


def _permissions(*codenames: str) -> list:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(codename__in=codenames))
