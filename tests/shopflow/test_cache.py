"""The Redis cache backend keeps one client per connection pool and behaves as Django's."""

import threading
import uuid

from django.conf import settings

from shopflow.cache import RedisCache


def a_cache() -> RedisCache:
    return RedisCache(settings.REDIS_URL, {"KEY_PREFIX": f"test-cache-{uuid.uuid4()}"})


def test_every_call_uses_the_same_redis_client():
    cache = a_cache()

    assert cache._cache.get_client() is cache._cache.get_client(write=True)


def test_threads_sharing_the_client_each_see_their_own_values():
    # given
    cache, seen = a_cache(), {}

    def use(n: int) -> None:
        for i in range(50):
            cache.set(f"k{n}", (n, i), timeout=30)
            seen[n] = cache.get(f"k{n}")

    # when
    threads = [threading.Thread(target=use, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert seen == {n: (n, 49) for n in range(8)}


def test_add_sets_only_a_missing_key():
    cache = a_cache()

    assert cache.add("wake", 1, timeout=30) is True
    assert cache.add("wake", 2, timeout=30) is False
    assert cache.get("wake") == 1
    cache.delete("wake")
    assert cache.add("wake", 3, timeout=30) is True
