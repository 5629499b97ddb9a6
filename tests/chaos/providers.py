"""The chaos run's gateway and carrier: the sandboxes, slower than a step's lease now and then.

About one call in SLOW_EVERY (chosen by its idempotency key, so a retry of the
same step is slow again) takes SLOW_SECONDS, longer than the chaos run's step
lease: the step must keep its lease by renewing it, and an attempt that loses
it to a killed worker must not act once it is stale (sagas/fencing.py).
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

from payments.gateways.sandbox import SandboxGateway
from shipping.carriers.sandbox import SandboxCarrier

SLOW_EVERY = int(os.environ.get("SHOPFLOW_CHAOS_SLOW_EVERY", "80"))
SLOW_SECONDS = float(os.environ.get("SHOPFLOW_CHAOS_SLOW_SECONDS", "4"))


def _maybe_slow(idempotency_key: str) -> None:
    if zlib.crc32(idempotency_key.encode()) % SLOW_EVERY == 0:
        time.sleep(SLOW_SECONDS)


class SometimesSlowGateway(SandboxGateway):
    def charge(self, **call: Any) -> Any:
        _maybe_slow(call["idempotency_key"])
        return super().charge(**call)


class SometimesSlowCarrier(SandboxCarrier):
    def schedule(self, **call: Any) -> str:
        _maybe_slow(call["idempotency_key"])
        return super().schedule(**call)
