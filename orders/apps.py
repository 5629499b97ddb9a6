from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from orders import signals  # noqa: F401  (keeps the timeline in step with the outbox)
