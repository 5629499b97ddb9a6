"""Celery transports: the filesystem one made safe, the Redis one made cheaper.

The Redis one also remembers how deep each queue was at this process's last
publish to it, so the outbox's dispatcher can tell busy workers without asking,
and `tasks_publish` sends a task's messages from a template Celery built once:
a quarter of `apply_async`'s CPU, the same message (see "Task messages from a
template" below).

The filesystem transport (the embedded default) publishes each message whole.

kombu's own `_put` creates the message file in the queue folder and then writes
it; a worker that lists the folder in between moves the empty file away, fails
to decode it and stops with "Unrecoverable error: JSONDecodeError" (kombu#1551),
which takes `make run` down with it. Here the message is written under a name
consumers skip and renamed into the queue, which is atomic within one folder.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple

from celery import signals
from kombu.exceptions import ChannelError, OperationalError
from kombu.transport import filesystem, redis
from kombu.utils.json import dumps, loads
from kombu.utils.uuid import uuid as kombu_uuid

if TYPE_CHECKING:
    from celery import Celery, Task
    from kombu import Connection, Producer

logger = logging.getLogger("shopflow.broker")


class FilesystemChannel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Write the message beside the queue, then rename it in: readers see all or nothing."""
        # kombu's own naming: consumers take the oldest first by sorting on the prefix.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class FilesystemTransport(filesystem.Transport):
    Channel = FilesystemChannel


# Seconds a queue's depth, as this process's last publish to it found it, stays current.
DEPTH_CURRENT_SECONDS = 0.2
# queue -> (messages in it right after this process's last publish, monotonic second)
_depths: dict[str, tuple[int, float]] = {}


def queue_depth_seen(queue: str) -> int:
    """Messages waiting in `queue` (this one's included) after this process's last publish to it.

    0 when this process has not published to it within DEPTH_CURRENT_SECONDS, or
    its broker is not Redis. Free: Redis' LPUSH answers with the list's length.
    """
    depth, when = _depths.get(queue, (0, 0.0))
    return depth if monotonic() - when <= DEPTH_CURRENT_SECONDS else 0


class RedisChannel(redis.Channel):
    """kombu's Redis channel, with one client per connection pool instead of one per command.

    kombu builds a new `redis.Redis` for every publish, ack and queue lookup
    (`Channel.conn_or_acquire`); redis-py 6 fills ~160 response callbacks in
    each, about a third of what a publish costs. A client over the channel's
    pool is thread-safe and holds no connection itself, so it can be kept while
    that pool lives; kombu replaces the pool on reconnect, and the client with it.
    """

    _pooled_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._pooled()

    def _pooled(self) -> Any:
        pool = self.pool
        kept = self._pooled_client
        if kept is None or kept.connection_pool is not pool:
            kept = self._pooled_client = self._create_client()
        return kept

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's `_put`, keeping the queue's length that LPUSH answers (`queue_depth_seen`).

        While this thread builds a template (`tasks_publish`), the message is kept, not sent.
        """
        captured = getattr(_capturing, "messages", None)
        if captured is not None:
            captured.append((queue, message))
            return
        self.message_push(queue, self._get_message_priority(message, reverse=False), dumps(message))

    def message_push(self, queue: str, priority: int, payload: str) -> None:
        """LPUSH one serialized message where kombu's `_put` would, and remember the depth."""
        depth = self._pooled().lpush(self._q_for_pri(queue, priority), payload)
        _depths[queue] = (int(depth), monotonic())


class RedisTransport(redis.Transport):
    Channel = RedisChannel


# --- Task messages from a template ------------------------------------------------
#
# `apply_async` costs ~250 µs of CPU per message here (routing, merging options,
# `maybe_declare` copying the queue entity, kombu's publish wrappers), the LPUSH
# ~50 of it, and taking a producer from Celery's pool ~45 more per call.
# `tasks_publish` keeps a connection per thread, has `apply_async` build a task's
# message to a queue once on it, kept instead of sent, and then changes per
# message only the fields Celery changes per message.

# What the capturing `apply_async` is given where a message carries its own values,
# so that the template finds every field they went to.
_TASK_ID = "shopflow-template-task-id"
_ROOT_ID = "shopflow-template-root-id"
_PARENT_ID = "shopflow-template-parent-id"
_ARGSREPR = "shopflow-template-argsrepr"
_PLACEHOLDERS = (_TASK_ID, _ROOT_ID, _PARENT_ID, _ARGSREPR)

_capturing = threading.local()  # .messages: a list while this thread builds a template
_publishers = threading.local()  # .owner (pid, app), .publisher: this thread's, or None


class TaskMessage(NamedTuple):
    """One message of a task: its arguments, the queue it goes to, how logs show the arguments."""

    args: tuple
    queue: str
    argsrepr: str


def tasks_publish(task: Task, messages: Iterable[TaskMessage]) -> None:
    """Send each message as `task.apply_async` would; on our Redis broker, from a template.

    Anything else goes through `apply_async` on one producer of Celery's pool:
    other brokers (the embedded default's filesystem one), a configuration under
    which two messages differ in more than their own values (`_template_build`),
    and receivers of Celery's publish signals, which the template path does not send.
    """
    publisher = None if _publish_observed() else _publisher(task.app)
    if publisher is None:
        _through_celery(task, messages)
        return
    unsent = [message for message in messages if not publisher.publish(task, message)]
    if unsent:
        _through_celery(task, unsent)


def _through_celery(task: Task, messages: Iterable[TaskMessage]) -> None:
    with task.app.producer_or_acquire() as producer:
        for args, queue, argsrepr in messages:
            task.apply_async(args=args, queue=queue, producer=producer, argsrepr=argsrepr)


def _publish_observed() -> bool:
    """Whether anything listens to the signals Celery sends around a publish."""
    return bool(
        signals.before_task_publish.receivers
        or signals.after_task_publish.receivers
        or signals.task_sent.receivers
    )


def _publisher(app: Celery) -> _Publisher | None:
    """This thread's publisher for `app`, made at first use and after a fork; None off Redis.

    Per thread and process: a message names both (`reply_to`, `origin`).
    """
    store = _publishers.__dict__
    if store.get("owner") != (os.getpid(), app):
        connection = app.connection_for_write()
        try:
            ours = isinstance(connection.transport, RedisTransport)
            publisher = _Publisher(connection) if ours else None
        except OperationalError:  # Redis unreachable: Celery's retry policy takes this call
            return None
        store.update(owner=(os.getpid(), app), publisher=publisher)
    return store["publisher"]


class _Publisher:
    """A thread's own connection to the Redis broker, and its message templates."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # One attempt (a PING), no retries: on failure the caller hands over to apply_async.
        connection.ensure_connection(max_retries=0)
        self.channel: RedisChannel = connection.channel()
        self.templates: dict[tuple[str, str], MessageTemplate | None] = {}

    def publish(self, task: Task, message: TaskMessage) -> bool:
        """Send `message` from its template; False when it has none, or the broker failed."""
        template = self._template(task, message)
        if template is None:
            return False
        task_id = kombu_uuid()
        ids = (task_id, *_lineage(task, task_id))
        payload = template.render(self.channel, message.args, message.argsrepr, ids)
        try:
            self.channel.message_push(template.queue, template.priority, payload)
        except self.connection.connection_errors:
            # apply_async then reconnects and retries (task_publish_retry_policy). An LPUSH
            # that failed after Redis ran it sends the task twice, as apply_async's retry can.
            logger.warning("publishing %s from its template failed; through Celery", task.name)
            return False
        return True

    def _template(self, task: Task, message: TaskMessage) -> MessageTemplate | None:
        """The template for `task` to this queue, built at its first use (None: not templatable)."""
        key = (task.name, message.queue)
        if key not in self.templates:
            producer = self.connection.Producer(self.channel)
            self.templates[key] = _template_build(producer, task, message)
        return self.templates[key]


def _lineage(task: Task, task_id: str) -> tuple[str, str | None]:
    """(root id, parent id) as `send_task` sets them: from the task running here, if any."""
    parent = task.app.current_worker_task
    if parent is None:
        return task_id, None
    return parent.request.root_id or parent.request.id or task_id, parent.request.id


@dataclass(frozen=True)
class MessageTemplate:
    """A task's message to one queue as Celery built it, and where each message's own values go.

    What differs between two messages of a task to a queue (Celery's protocol 2,
    docs.celeryq.dev/en/latest/internals/protocol.html; kombu's virtual
    `Channel._inplace_augment_message`): the task id (header `id`, property
    `correlation_id`), `root_id` and `parent_id` (from the task publishing it, if
    any), `argsrepr` (a header, and a property because Celery passes unknown
    options on as properties), the body `(args, kwargs, embed)` encoded as
    `body_encoding` says, and the delivery tag: a new uuid per message, since
    ack emulation keys its unacked hash by it (kombu#563, celery#3019).
    """

    queue: str
    priority: int
    message: dict[str, Any]
    slots: tuple[tuple[str, str, str], ...]  # (headers or properties, key, placeholder)
    kwargs: dict[str, Any]
    embed: dict[str, Any]

    def render(
        self, channel: RedisChannel, args: tuple, argsrepr: str, ids: tuple[str, str, str | None]
    ) -> str:
        """The message, serialized as `_put` would, for `args` and (task id, root id, parent id)."""
        values = dict(zip(_PLACEHOLDERS, (*ids, argsrepr), strict=True))
        parts = {"headers": dict(self.message["headers"])}
        parts["properties"] = properties = dict(self.message["properties"])
        for part, key, placeholder in self.slots:
            parts[part][key] = values[placeholder]
        properties["delivery_tag"] = channel._next_delivery_tag()
        body = dumps((args, self.kwargs, self.embed))
        body, _ = channel.encode_body(body, properties.get("body_encoding"))
        return dumps({**self.message, "body": body, **parts})


def _template_build(producer: Producer, task: Task, message: TaskMessage) -> MessageTemplate | None:
    """What `apply_async` would send, kept here; None when messages would differ in more."""
    conf = task.app.conf
    if (
        conf.task_always_eager  # nothing is sent: the task would run here
        or conf.task_send_sent_event  # each publish also sends an event
        or conf.task_inherit_parent_priority  # the priority would follow the publishing task
        or conf.task_protocol != 2
    ):
        return None
    _capturing.messages = captured = []
    try:
        task.apply_async(
            args=message.args, queue=message.queue, producer=producer, argsrepr=_ARGSREPR,
            task_id=_TASK_ID, root_id=_ROOT_ID, parent_id=_PARENT_ID,
        )  # fmt: skip
    finally:
        _capturing.messages = None
    if [queue for queue, _ in captured] != [message.queue]:
        return None
    return _template_checked(producer.channel, message.queue, captured[0][1], message.args)


def _template_checked(
    channel: RedisChannel, queue: str, message: dict[str, Any], args: tuple
) -> MessageTemplate | None:
    """The template of a captured message, if rendering it gives that message back."""
    headers, properties = message["headers"], message["properties"]
    if (
        message.get("content-type") != "application/json"
        or headers.get("compression") or headers.get("eta") or headers.get("expires")
        or "expiration" in properties
    ):  # fmt: skip
        return None
    body = channel.decode_body(message["body"], properties.get("body_encoding"))
    _, kwargs, embed = loads(body)
    template = MessageTemplate(
        queue=queue,
        priority=channel._get_message_priority(message, reverse=False),
        message=message,
        slots=tuple(
            (part, key, value)
            for part in ("headers", "properties")
            for key, value in message[part].items()
            if value in _PLACEHOLDERS
        ),
        kwargs=kwargs,
        embed=embed,
    )
    again = loads(template.render(channel, args, _ARGSREPR, (_TASK_ID, _ROOT_ID, _PARENT_ID)))
    again["properties"]["delivery_tag"] = properties["delivery_tag"]
    fresh = template.render(channel, args, "-", ("-", "-", "-"))
    if again != message or any(placeholder in fresh for placeholder in _PLACEHOLDERS):
        logger.warning("no message template for %s to %s; through Celery", headers["task"], queue)
        return None
    return template
