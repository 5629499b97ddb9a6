"""The notifications admin: what went out and what failed; "send again" is explicit and recorded."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse

from notifications.models import Notification
from tests.notifications.conftest import free_port
from tests.notifications.factories import order_made

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifications_notification_changelist")


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")


@pytest.fixture
def staff(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may look at notifications but not act on them."""
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_notification"))
    client.force_login(user)
    return client


@pytest.fixture
def notifications():
    """A sent confirmation and a failed shipping e-mail, each about its own order."""
    confirmed = order_made(status="confirmed", customer__email="ada@example.com")
    shipped = order_made(status="shipped", customer__email="bob@example.com")
    return {
        "sent": Notification.objects.create(
            event_id=uuid.uuid4(), kind="confirmed", order_id=confirmed.id, status="sent",
            recipient="ada@example.com", subject=f"Order {confirmed.number} is confirmed",
            attempts=1,
        ),
        "failed": Notification.objects.create(
            event_id=uuid.uuid4(), kind="shipped", order_id=shipped.id, status="failed",
            recipient="bob@example.com", attempts=3, error="SMTPRecipientsRefused: 451 (gave up)",
        ),
    }  # fmt: skip


def listed(response):
    assert response.status_code == 200
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def send_again(client, *objects):
    data = {"action": "send_again", "_selected_action": [str(o.pk) for o in objects]}
    return client.post(CHANGELIST, data, follow=True)


def shown_messages(response):
    return [str(m) for m in response.context["messages"]]


def test_changelist_lists_every_notification_with_its_filters(staff, notifications):
    # when
    page = staff.get(CHANGELIST)
    # then
    assert listed(page) == sorted(n.pk for n in notifications.values())
    html = page.content.decode()
    assert "By status" in html
    assert "By kind" in html
    assert "send_again" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", "failed"),
        ("status__exact=sent&kind__exact=confirmed", "sent"),
        ("kind__exact=shipped", "failed"),
        ("q=bob%40example.com", "failed"),
        ("q=ada%40example.com", "sent"),
    ],
)
def test_changelist_filters_by_status_and_kind_and_finds_by_recipient(
    staff, notifications, query, expected
):
    # when
    page = staff.get(f"{CHANGELIST}?{query}")
    # then
    assert listed(page) == [notifications[expected].pk]


def test_changelist_finds_a_notification_by_order_id(staff, notifications):
    # when
    page = staff.get(CHANGELIST, {"q": str(notifications["failed"].order_id)})
    # then
    assert listed(page) == [notifications["failed"].pk]


def test_send_again_emails_the_customer_and_records_who_and_how_often(
    staff, operator, notifications
):
    # given
    note = notifications["failed"]
    # when
    first = send_again(staff, note)
    send_again(staff, note)
    # then
    assert [m.to for m in mail.outbox] == [["bob@example.com"]] * 2
    assert "has shipped" in mail.outbox[0].subject
    note.refresh_from_db()
    assert (note.resent_count, note.last_resent_by) == (2, operator)
    assert note.last_resent_at is not None
    assert shown_messages(first) == [f"{note}: sent again"]


def test_send_again_reports_an_smtp_failure_and_records_no_resend(staff, notifications, settings):
    # given: nothing listens on the SMTP port
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    note = notifications["sent"]
    # when
    response = send_again(staff, note)
    # then
    assert response.status_code == 200
    (shown,) = shown_messages(response)
    assert shown.startswith(f"{note}: not sent: ")
    note.refresh_from_db()
    assert (note.resent_count, note.last_resent_by, note.last_resent_at) == (0, None, None)


def test_staff_who_may_only_view_cannot_send_again(viewer, notifications):
    # when
    page = viewer.get(CHANGELIST)
    attempt = send_again(viewer, notifications["sent"])
    # then
    assert page.status_code == 200
    assert "send_again" not in page.content.decode()
    assert attempt.status_code == 200
    assert mail.outbox == []
    assert Notification.objects.get(pk=notifications["sent"].pk).resent_count == 0


def test_notifications_cannot_be_added_changed_or_deleted_through_the_admin(staff, notifications):
    # given
    note = notifications["sent"]
    change = reverse("admin:notifications_notification_change", args=[note.pk])
    # when
    page = staff.get(change)
    add = staff.get(reverse("admin:notifications_notification_add"))
    delete = staff.post(reverse("admin:notifications_notification_delete", args=[note.pk]))
    # then
    assert page.status_code == 200
    assert note.subject in page.content.decode()
    assert (add.status_code, delete.status_code) == (403, 403)
    assert Notification.objects.filter(pk=note.pk).exists()
