"""Settings of bench/saga.py: the HTTP benchmarks' settings plus the statement counters."""

from bench.bare.settings import *  # noqa: F403
from bench.bare.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.counting"]
