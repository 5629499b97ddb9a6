"""The Redis cache backend: Django's, with one `redis.Redis` client per connection pool.

Django's `RedisCacheClient.get_client` builds a `redis.Redis` on every call, and
each one fills a table of ~250 response callbacks: ~0.1 ms of CPU per cache call,
and every API request makes two (the user throttle) and every placement a third
(the outbox relay's wake-up). A `redis.Redis` over a `ConnectionPool` is
thread-safe (each command takes a connection from the pool), and the pool itself
reconnects after a fork, so one client per pool serves every thread.

Every command also has a timeout (CACHE_SOCKET_TIMEOUT, unless OPTIONS set
their own): the cache is an optimisation, and a cache host that accepts
connections but never answers (hung, partitioned) must fail its callers fast,
not hang a relay's drain or the commit hooks of web requests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    """Keeps the client of each connection pool instead of building one per call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(django_redis.RedisCache):
    """`django.core.cache.backends.redis.RedisCache` with `RedisCacheClient` above."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        timeout = settings.CACHE_SOCKET_TIMEOUT
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        params = {**params, "OPTIONS": {**options, **params.get("OPTIONS", {})}}
        super().__init__(server, params)
        self._class = RedisCacheClient
