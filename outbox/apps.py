from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"

    def ready(self) -> None:
        from outbox import signals  # noqa: F401  (connects the post_save receiver)

        autodiscover_modules("events", "handlers")
