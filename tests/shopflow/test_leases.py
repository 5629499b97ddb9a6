"""One renewal thread keeps every lease of a process; none is renewed after its block."""

import threading
import time

from shopflow import leases
from shopflow.leases import lease_renewed
from tests.conftest import wait_until


def test_a_slow_block_is_renewed_every_interval_and_never_after_it_ends():
    calls: list[float] = []
    with lease_renewed(lambda: calls.append(time.monotonic()) or True, every=0.02, longest=10):
        time.sleep(0.15)
    ended = len(calls)
    time.sleep(0.08)
    assert 3 <= ended <= 8
    assert len(calls) == ended


def test_a_lost_lease_is_not_renewed_again():
    calls: list[int] = []
    with lease_renewed(lambda: calls.append(1) and False, every=0.01, longest=10):
        time.sleep(0.1)
    assert calls == [1]


def test_renewing_stops_after_the_longest_time():
    calls: list[int] = []
    with lease_renewed(lambda: calls.append(1) or True, every=0.01, longest=0.03):
        time.sleep(0.1)
    assert len(calls) == 3


def test_many_blocks_share_one_thread():
    def block() -> None:
        with lease_renewed(lambda: True, every=0.01, longest=1):
            time.sleep(0.05)

    threads = [threading.Thread(target=block) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    renewal_threads = [t for t in threading.enumerate() if t.name == "lease-renewal"]
    assert renewal_threads == [leases._renewer.thread]


def test_a_block_that_ends_waits_for_its_renewal_under_way():
    renewing, finished = threading.Event(), threading.Event()

    def slow_renew() -> bool:
        renewing.set()
        time.sleep(0.1)
        finished.set()
        return True

    with lease_renewed(slow_renew, every=0.01, longest=10):
        renewing.wait(1)
    assert finished.is_set()


def test_the_renewal_thread_lets_go_of_its_connection_once_no_lease_is_left():
    with lease_renewed(lambda: True, every=0.01, longest=1):
        time.sleep(0.05)
    assert wait_until(lambda: not leases._renewer.connected, timeout=1, interval=0.01)
