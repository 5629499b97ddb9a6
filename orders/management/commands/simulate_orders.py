"""`manage.py simulate_orders`: a demo load of orders through the real HTTP API."""

from __future__ import annotations

import math
import os
import random
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from inventory.management.commands.seed_demo import DEMO_USERS
from orders.simulation import (
    DEFAULT_MIX,
    SCENARIOS,
    ApiUnreachable,
    InvalidMix,
    PlannedOrder,
    ShopClient,
    Simulation,
    Summary,
    mix_parse,
    orders_plan,
    reply_detail,
)

DEMO_CUSTOMER = next(user for user in DEMO_USERS if not user.staff)
# Seconds to wait after the last placement for the sagas to settle: tok_down gives up
# within a minute by the contract.
DEFAULT_TIMEOUT = 120.0


class Command(BaseCommand):
    help = (
        "Place orders through the HTTP API of a running ShopFlow at a steady rate, with a "
        "mix of sandbox behaviours, and follow them until their sagas settle; then print "
        "their final statuses and reasons, saga durations and throughput. Mix keys: "
        f"{', '.join(SCENARIOS)} (tok_visa, tok_chargeDeclined, tok_flaky, tok_down, "
        "shipping to AQ, cancelled shortly after placing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Read as text and checked in handle(), so a bad value is one CommandError line.
        parser.add_argument(
            "--count", default="50", metavar="N", help="orders to place (default: %(default)s)"
        )
        parser.add_argument(
            "--rate", default="2", metavar="R", help="orders per second (default: %(default)s)"
        )
        parser.add_argument(
            "--mix",
            default=DEFAULT_MIX,
            metavar="KEY=PCT,...",
            help="percentages adding to 100 (default: %(default)s)",
        )
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="the running server (default: the local one, on $PORT or 8000)",
        )
        parser.add_argument(
            "--username", default=DEMO_CUSTOMER.username, help="a customer (default: %(default)s)"
        )
        parser.add_argument(
            "--password", default=DEMO_CUSTOMER.password, help="default: the seed_demo one"
        )
        parser.add_argument("--token", help="an API token; replaces --username/--password")
        parser.add_argument(
            "--timeout",
            default=str(DEFAULT_TIMEOUT),
            metavar="SECONDS",
            help="wait this long after the last placement (default: %(default)s)",
        )
        parser.add_argument("--seed", help="makes the order mix and the items repeatable")

    def handle(self, *args: Any, **options: Any) -> None:
        count = _positive("--count", options["count"], int)
        rate = _positive("--rate", options["rate"], float)
        timeout = _positive("--timeout", options["timeout"], float)
        try:
            mix = mix_parse(options["mix"])
        except InvalidMix as exc:
            raise CommandError(str(exc)) from exc
        client = ShopClient(_url(options["url"]))
        try:
            client.token = options["token"] or _log_in(client, options)
            stock = _stock_for_sale(client)
        except ApiUnreachable as exc:
            raise CommandError(str(exc)) from exc
        rng = random.Random(options["seed"])
        summary = self._simulate(client, orders_plan(mix, count, stock, rng), rate, timeout)
        self.stdout.write("\n".join(summary.lines()))
        if summary.interrupted:
            raise CommandError("interrupted; the summary covers the orders placed so far")
        if summary.unsettled:
            raise CommandError(
                f"{summary.unsettled} orders still pending {timeout:g} s after the last "
                "placement: are the worker and beat running, and keeping up with --rate?"
            )

    def _simulate(
        self, client: ShopClient, orders: list[PlannedOrder], rate: float, timeout: float
    ) -> Summary:
        """Run the simulation behind a live bar of settled orders (on stderr, when a TTY)."""
        out = self.stderr._out
        with tqdm(total=len(orders), unit="order", desc="settled", file=out, disable=None) as bar:

            def progress(settled: int, placed: int) -> None:
                bar.set_postfix(placed=placed, refresh=False)
                bar.update(settled - bar.n)

            return Simulation(client, orders, rate=rate, progress=progress).run(timeout=timeout)


def _positive(flag: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number <= 0:
        noun = "a whole number" if kind is int else "a number"
        raise CommandError(f"{flag} must be {noun} above 0, not {value!r}")
    return number


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(
            f"--url must be an http(s) URL like http://127.0.0.1:8000, not {value!r}"
        )
    return value


def _log_in(client: ShopClient, options: dict[str, Any]) -> str:
    """A token for the customer, from POST /api/auth/token/."""
    credentials = {"username": options["username"], "password": options["password"]}
    reply = client.call("POST", "/api/auth/token/", credentials)
    if reply.status == 200:
        return reply.body["token"]
    if reply.status == 404:
        raise CommandError(f"{client.base_url} is not a ShopFlow API (no /api/auth/token/)")
    raise CommandError(f"cannot log in as {options['username']!r}: {reply_detail(reply)}")


def _stock_for_sale(client: ShopClient) -> dict[str, int]:
    """Available quantity by SKU, for what is in stock; the token is checked on the way."""
    reply = client.call("GET", "/api/orders/?status=pending")
    if reply.status != 200:
        raise CommandError(f"the token is not accepted at {client.base_url} ({reply.status})")
    products = client.pages("/api/products/")
    stock = {p["sku"]: p["available"] for p in products if p["available"] > 0}
    if not stock:
        raise CommandError(f"no product in stock at {client.base_url}: run manage.py seed_demo")
    return stock
