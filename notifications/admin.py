"""Customer e-mails: what went out, what failed; "send again" is explicit and recorded."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.models import Notification
from notifications.services import notification_resend
from outbox.admin import ReadOnlyAdmin


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "kind", "status", "recipient", "attempts", "sent_at",
                    "resent_count", "created_at")  # fmt: skip
    list_filter = ("status", "kind")
    search_fields = ("order_id", "recipient", "subject")
    actions = ("send_again",)

    @admin.action(description="Send the selected e-mails again", permissions=["operate"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        for notification in queryset:
            try:
                notification_resend(notification=notification, by=request.user)
            except Exception as exc:  # an SMTP error must reach the operator, not a 500
                self.message_user(request, f"{notification}: not sent: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{notification}: sent again", messages.SUCCESS)
