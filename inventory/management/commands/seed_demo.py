"""`manage.py seed_demo`: a demo catalog with stock, a staff user and two customers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from inventory.models import Product
from inventory.services import product_create

# (sku, name, price, stock on hand)
DEMO_PRODUCTS = [
    ("MUG-1", "Ceramic mug", "9.95", 120),
    ("MUG-2", "Enamel camping mug", "14.50", 40),
    ("TEE-BLK-M", "T-shirt, black, M", "19.90", 60),
    ("TEE-WHT-L", "T-shirt, white, L", "19.90", 35),
    ("HOODIE-GRY-M", "Hoodie, grey, M", "49.00", 20),
    ("CAP-1", "Baseball cap", "17.00", 50),
    ("BOTTLE-750", "Steel bottle, 750 ml", "24.90", 80),
    ("NOTEBOOK-A5", "Dotted notebook, A5", "8.40", 200),
    ("STICKERS-5", "Sticker pack of 5", "3.00", 500),
    ("TOTE-1", "Canvas tote bag", "12.00", 3),
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    email: str
    password: str
    staff: bool = False


# Demo credentials, documented here and printed by the command; never for production.
DEMO_USERS = [
    DemoUser("admin", "admin@shopflow.example", "shopflow-admin", staff=True),
    DemoUser("alice", "alice@shopflow.example", "shopflow-alice"),
    DemoUser("bob", "bob@shopflow.example", "shopflow-bob"),
]


class Command(BaseCommand):
    help = (
        "Seed the demo catalog (10 products with stock), the staff user admin "
        "(password shopflow-admin) and the customers alice (shopflow-alice) and bob "
        "(shopflow-bob); the catalog only where SEED_DEMO_USERS is off (production). "
        "Idempotent: what already exists is left exactly as it is."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Published passwords must never open a production admin: there, catalog only.
        demo_users = DEMO_USERS if settings.SEED_DEMO_USERS else []
        with transaction.atomic():
            products = _seed_products()
            users = {user.username: _seed_user(user) for user in demo_users}
        self.stdout.write(f"products: {products} added, {len(DEMO_PRODUCTS) - products} kept")
        if not demo_users:
            self.stdout.write("users: none (SEED_DEMO_USERS is off; demo passwords are public)")
        for user in demo_users:
            role = "staff" if user.staff else "customer"
            state = "added" if users[user.username] else "kept, password unchanged"
            self.stdout.write(f"{role:8} {user.username:6} password {user.password}  ({state})")


def _seed_products() -> int:
    """Add the demo products that are missing; returns how many were added."""
    existing = set(
        Product.objects.filter(sku__in=[p[0] for p in DEMO_PRODUCTS]).values_list("sku", flat=True)
    )
    for sku, name, price, stock in DEMO_PRODUCTS:
        if sku not in existing:
            product_create(sku=sku, name=name, price=Decimal(price), stock=stock)
    return len(DEMO_PRODUCTS) - len(existing)


def _seed_user(user: DemoUser) -> bool:
    """Create the user unless the username is taken; returns whether it was created."""
    User = get_user_model()
    if User.objects.filter(username=user.username).exists():
        return False
    if user.staff:
        User.objects.create_superuser(user.username, user.email, user.password)
    else:
        User.objects.create_user(user.username, user.email, user.password)
    return True
