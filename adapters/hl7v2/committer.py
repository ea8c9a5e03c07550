"""Group commit: one writer thread stores whatever messages are waiting in one transaction.

Durability costs one fsync per commit, and the fsync, not the insert, is what limits a
single connection. While the writer commits one batch, the event loop frames, checks and
queues the next, so with many connections each fsync covers many messages; with one
connection each message still gets its own commit and waits only for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence

from adapters.hl7v2.inbox import Inbox, NewMessage, StoreResult

log = logging.getLogger(__name__)

_Item = tuple[NewMessage, "asyncio.Future[StoreResult]", asyncio.AbstractEventLoop]
_STOP = object()


class GroupCommitter:
    """Stores messages for coroutines, batching concurrent ones into one commit."""

    def __init__(self, inbox: Inbox, max_batch: int = 256) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.messages = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hl7-inbox-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Store everything queued so far, then stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    async def store(self, message: NewMessage) -> StoreResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._queue.put((message, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Item] = [first]  # type: ignore[list-item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: Sequence[_Item]) -> None:
        outcomes: list[StoreResult | BaseException]
        try:
            outcomes = list(self.inbox.store_batch([m for m, _, _ in batch]))
        except Exception:
            log.exception("hl7 inbox: batch of %d failed; storing one by one", len(batch))
            outcomes = []
            for message, _, _ in batch:
                try:
                    outcomes.append(self.inbox.store(message))
                except Exception as exc:
                    log.exception("hl7 inbox: could not store %s", message.control_id)
                    outcomes.append(exc)
        self.batches += 1
        self.messages += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[StoreResult], object]]]
        by_loop = {}
        for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, pairs in by_loop.items():
            # A closed loop's connections are gone: nothing to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[StoreResult], object]]) -> None:
    for future, outcome in pairs:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]
