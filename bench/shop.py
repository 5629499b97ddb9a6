"""Set-up shared by the HTTP benchmarks: environment, customers with tokens, a stocked catalog.

Like bench/outbox.py, they run in the benchmark's own database (`<DATABASE_URL
name>_bench`, created and migrated here when missing) and clear what they wrote.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from bench.database import QUEUES, bench_urls
from bench.workers import LOG_DIR

METRICS_DIR = LOG_DIR / "prometheus-shop"
CUSTOMER_PREFIX = "bench-customer-"
SKU_PREFIX = "BENCH-"
# Apps whose rows the benchmarks write; their tables are emptied before and after.
WRITTEN_APPS = ("outbox", "orders", "payments", "shipping", "sagas", "notifications",
                "analytics", "bench_bare")  # fmt: skip
WRITTEN_MODELS = ("inventory.Reservation", "inventory.ReservationLine")
ADDRESS = {"name": "Ada Bench", "line1": "1 Main St", "city": "Springfield",
           "postal_code": "12345", "country": "US"}  # fmt: skip


def environment(**overrides: str) -> dict[str, str]:
    """Point this process and its children at the benchmark's database and settings."""
    url, broker_url, redis_url = bench_urls()
    env = {
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "bench.bare.settings",
        # As production runs: no per-query bookkeeping, no debug pages.
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
        "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    os.environ.update(env)
    return {**os.environ, **env}


def django_ready() -> None:
    """Set Django up and migrate the benchmark database."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def shop_reset() -> None:
    """Empty every table the benchmarks write (not users, tokens or products) and the queues."""
    import redis
    from django.apps import apps
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    from outbox.relay import WAKE_KEY

    models = [m for app in WRITTEN_APPS for m in apps.get_app_config(app).get_models()]
    models += [apps.get_model(label) for label in WRITTEN_MODELS]
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
    with connection.cursor() as cursor:
        # CASCADE: a table added later that points at these holds bench rows too.
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*QUEUES)
    cache.delete(WAKE_KEY)


def customers_ensure(count: int) -> list[str]:
    """`count` customers with API tokens (made once, kept between runs); their token keys."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user_model = get_user_model()
    names = [f"{CUSTOMER_PREFIX}{n:04d}" for n in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        user_model(username=name, email=f"{name}@bench.invalid", password="!")
        for name in names
        if name not in existing
    )
    users = list(user_model.objects.filter(username__in=names).order_by("username"))
    have = set(Token.objects.filter(user__in=users).values_list("user_id", flat=True))
    Token.objects.bulk_create(
        Token(user=user, key=Token.generate_key()) for user in users if user.pk not in have
    )
    return list(
        Token.objects.filter(user__in=users)
        .order_by("user__username")
        .values_list("key", flat=True)
    )


def catalog_ensure(count: int, stock: int = 1_000_000_000) -> list[str]:
    """`count` active products with ample stock (topped up, nothing reserved); their SKUs."""
    from decimal import Decimal

    from inventory.models import Product

    skus = [f"{SKU_PREFIX}{n:03d}" for n in range(count)]
    Product.objects.bulk_create(
        [Product(sku=sku, name=f"Bench item {sku}", price=Decimal("9.90") + n, on_hand=stock)
         for n, sku in enumerate(skus)],
        ignore_conflicts=True,
    )  # fmt: skip
    Product.objects.filter(sku__in=skus).update(on_hand=stock, reserved=0, active=True)
    return skus


def order_bodies(skus: list[str], count: int = 64) -> list[dict]:
    """Varied valid placement bodies: 1 to 3 lines of the catalog, `tok_visa`, a US address."""
    bodies = []
    for n in range(count):
        lines = 1 + n % 3
        items = [
            {"sku": skus[(n + i) % len(skus)], "quantity": 1 + (n + i) % 2} for i in range(lines)
        ]
        bodies.append({"items": items, "payment_token": "tok_visa", "shipping_address": ADDRESS})
    return bodies


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    import platform

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_avg_at_start": round(os.getloadavg()[0], 2),
    }
