"""`make run` on the embedded default, run like a user: a copy of the repository,
no DATABASE_URL or CELERY_BROKER_URL, so SQLite and the filesystem broker under
var/; migrate, seed_demo, then web + worker + beat from the Procfile under honcho;
orders through the HTTP API; then Ctrl-C (SIGINT to make's process group, as a
terminal sends it). The copy links this suite's .venv, and make is told it is
installed (`-o`), so nothing is installed or created there."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inventory.management.commands.seed_demo import DEMO_USERS
from tests.conftest import ROOT, wait_until

# The venv this suite runs in, linked into the copy as its .venv (no new venv).
VENV = Path(sys.executable).parent.parent
# Variables the suite sets for itself that a user starting `make run` would not have.
SUITE_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "PROMETHEUS_MULTIPROC_DIR",
    "SHOPFLOW_TEST_METRICS_DIR",
    "SHOPFLOW_TEST_EMAIL_URL",
    "PORT",
)
NOT_COPIED = (".git", ".venv", "var", ".env", "__pycache__", ".*_cache", ".hypothesis")
# Where `make run` sends a user once it is up.
BANNER_PATHS = ("/api/docs/", "/admin/", "/admin/dashboard/", "/api/auth/token/")
ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345"}
CUSTOMER = next(user for user in DEMO_USERS if not user.staff)
FINAL = {"confirmed", "failed", "cancelled"}


class Shop:
    """A copy of the repository running `make run` on the embedded default."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "make-run.log"
        self.env = {k: v for k, v in os.environ.items() if k not in SUITE_VARIABLES}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.make: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, int] = {}  # every process of this shop met so far -> its group

    def start(self) -> None:
        """`make run` in its own process group, like a command typed in a terminal."""
        (self.folder / ".venv").symlink_to(VENV)
        self.make = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run", f"PORT={self.port}"],
            cwd=self.folder, env=self.env, stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        # migrate and seed_demo on a busy machine, then the processes' start
        assert wait_until(self._ready, timeout=180, interval=0.5), self.output()[-3000:]

    def _ready(self) -> bool:
        assert self.make is not None and self.make.poll() is None, self.output()[-3000:]
        self.processes()
        with contextlib.suppress(httpx.HTTPError):
            answered = httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
            return answered and " ready." in self.output()
        return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> dict[int, int]:
        """Every process honcho started, its children included: pid -> process group."""
        assert self.make is not None
        found = _descendants(self.make.pid)
        self.seen.update(found)
        return found

    def kill(self) -> None:
        """SIGKILL whatever of this shop still runs (after a failed test)."""
        if self.make is None:
            return
        self.processes()
        for group in {self.make.pid, *self.seen.values()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        self.make.wait()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    folder = tmp_path / "shopflow"
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(*NOT_COPIED))
    shop = Shop(folder)
    yield shop
    shop.kill()


def test_the_embedded_default_takes_orders_to_their_final_states_and_stops_on_ctrl_c(shop):
    # given
    shop.start()
    started = shop.output()
    assert re.search(rf"customer +{CUSTOMER.username} +password {CUSTOMER.password}", started)
    assert all(f"{shop.url}{path}" in started for path in BANNER_PATHS), started
    assert "manage.py simulate_orders" in started
    api = _customer_api(shop.url)
    # when
    orders = {
        "visa": _place(api, "tok_visa"),
        "declined": _place(api, "tok_chargeDeclined"),
        "flaky": _place(api, "tok_flaky"),
        "antarctica": _place(api, "tok_visa", country="AQ"),
        "cancelled": _place(api, "tok_visa"),
    }
    assert api.post(f"/api/orders/{orders['cancelled']}/cancel/", json={}).status_code == 202
    # then
    final = {name: _settled(api, order_id) for name, order_id in orders.items()}
    assert _outcome(final["visa"]) == ("confirmed", "", "captured")
    assert _outcome(final["declined"]) == ("failed", "payment_declined", "declined")
    assert _outcome(final["flaky"]) == ("confirmed", "", "captured")
    assert _outcome(final["antarctica"]) == ("failed", "shipping_unavailable", "refunded")
    assert final["cancelled"]["status"] == "cancelled"
    assert "database is locked" not in shop.output()
    assert "Unrecoverable error" not in shop.output()
    # when: Ctrl-C
    processes = shop.processes()
    assert len(processes) >= 7, processes  # honcho, web, worker, beat, 2 + 2 children
    os.killpg(shop.make.pid, signal.SIGINT)
    # then: make ends, and with it every process it started; no pool process was killed
    # mid-task by honcho's group-wide SIGTERM
    shop.make.wait(timeout=30)
    assert wait_until(lambda: not any(_running(pid) for pid in processes), timeout=5), [
        pid for pid in processes if _running(pid)
    ]
    assert "SIGINT received" in shop.output()
    assert "exited with 'signal 15 (SIGTERM)'" not in shop.output()


def _customer_api(url: str) -> httpx.Client:
    credentials = {"username": CUSTOMER.username, "password": CUSTOMER.password}
    token = httpx.post(f"{url}/api/auth/token/", json=credentials, timeout=30).json()["token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=30)


def _place(api: httpx.Client, payment_token: str, country: str = "US") -> str:
    body = {
        "items": [{"sku": "MUG-1", "quantity": 1}],
        "payment_token": payment_token,
        "shipping_address": {**ADDRESS, "country": country},
    }
    response = api.post("/api/orders/", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _settled(api: httpx.Client, order_id: str) -> dict[str, Any]:
    """The order once final and quiet: no payment left pending or captured by a failure."""
    order: dict[str, Any] = {}

    def quiet() -> bool:
        order.update(api.get(f"/api/orders/{order_id}/").json())
        payment = (order["payment"] or {}).get("status")
        return order["status"] in FINAL and (order["status"] == "confirmed") == (
            payment == "captured"
        )

    assert wait_until(quiet, timeout=60, interval=0.2), order
    return order


def _outcome(order: dict[str, Any]) -> tuple[str, str, str | None]:
    return order["status"], order["failure_reason"], (order["payment"] or {}).get("status")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(root: int) -> dict[int, int]:
    """pid -> process group of every live descendant of `root`, from /proc."""
    parents: dict[int, int] = {}
    groups: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)], groups[int(stat.parent.name)] = (
                int(fields[1]),
                int(fields[2]),
            )
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.update({pid: groups[pid] for pid in children})
        frontier += children
    return found


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (exited, only not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
