"""MLLP framing on raw bytes and an asyncio listener.

A frame is ``0x0B payload 0x1C 0x0D``. Bytes outside frames are junk and are discarded
(whitespace between frames is tolerated silently). A start byte inside an unfinished frame
abandons the partial frame: the sender restarted, and the truncated part cannot be framed.
A frame growing past the size limit is read to its end and reported as oversized with its
first bytes, so the handler can still refuse it with an ACK.

The listener knows nothing about HL7: each frame goes to a handler, whose answer is framed
and written back, in frame order, exactly once per frame. A handler is a coroutine
function; one that also has ``submit(inbound, reply)`` is called through that instead, and
calls ``reply(answer)`` when it has the answer (the intake does, to avoid a task and a
coroutine per message on its hot path).

Timeouts: a frame that has started (or junk that arrived) must complete within
``read_timeout``; a connection with no bytes at all for ``idle_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

log = logging.getLogger(__name__)

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"
_SB, _EB = 0x0B, 0x1C
_WHITESPACE = frozenset(b" \t\r\n\x00")
HEAD_BYTES = 4096


def frame(payload: bytes) -> bytes:
    return SB + payload + EB + CR


@dataclass(frozen=True, slots=True)
class Inbound:
    """One framed message as received.

    For an oversized frame, ``payload`` holds only its first bytes and ``size`` the total.
    """

    payload: bytes
    peer: str
    size: int
    oversized: bool = False


class Framer:
    """Incremental MLLP deframer: feed bytes, get complete payloads."""

    __slots__ = ("_buf", "_discarding", "_head", "_in_frame", "_size", "junk", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._in_frame = False
        self._discarding = False
        self._head = b""
        self._size = 0
        self.junk = 0
        """Non-whitespace bytes discarded since the last complete frame."""

    @property
    def busy(self) -> bool:
        """A frame is open, or junk arrived since the last frame."""
        return self._in_frame or self.junk > 0

    def feed(self, data: bytes) -> list[tuple[bytes, int, bool]]:
        """Returns (payload, size, oversized) for each frame completed by ``data``."""
        out: list[tuple[bytes, int, bool]] = []
        view = memoryview(data)
        pos, n = 0, len(data)
        while pos < n:
            if not self._in_frame:
                start = data.find(SB, pos)
                stop = n if start < 0 else start
                if stop > pos:
                    self._count_junk(view[pos:stop])
                if start < 0:
                    return out
                self._open()
                pos = start + 1
                continue
            end = data.find(EB, pos)
            restart = data.find(SB, pos, n if end < 0 else end)
            if restart >= 0:
                # A new frame starts before this one ended: the partial frame is lost.
                self.junk += 1
                self._open()
                pos = restart + 1
                continue
            stop = n if end < 0 else end
            self._append(view[pos:stop])
            if end < 0:
                return out
            out.append(self._close())
            pos = end + 1
        return out

    def _open(self) -> None:
        self._in_frame = True
        self._discarding = False
        self._buf.clear()
        self._head = b""
        self._size = 0

    def _append(self, chunk: memoryview) -> None:
        self._size += len(chunk)
        if self._discarding:
            return
        if self._size > self.max_size:
            self._discarding = True
            self._buf += chunk
            self._head = bytes(self._buf[:HEAD_BYTES])
            self._buf.clear()
            return
        self._buf += chunk

    def _close(self) -> tuple[bytes, int, bool]:
        self._in_frame = False
        self.junk = 0
        if self._discarding:
            self._discarding = False
            return self._head, self._size, True
        payload = bytes(self._buf)
        self._buf.clear()
        return payload, self._size, False

    def _count_junk(self, chunk: memoryview) -> None:
        for byte in chunk:
            if byte not in _WHITESPACE:
                self.junk += 1


Handler = Callable[[Inbound], Awaitable[bytes | None]]
Reply = Callable[[bytes | None], None]
"""Called once with a frame's answer (None: no answer; the frame is still done)."""

_WAITING = object()
_FAILED = object()


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    read_timeout: float = 30.0
    idle_timeout: float | None = 600.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_connections: int = 256
    max_pipelined: int = 64
    ssl: ssl.SSLContext | None = None


class MllpServer:
    """An MLLP listener handing each frame to ``handler`` and writing back its answer."""

    def __init__(self, handler: Handler, config: ListenerConfig) -> None:
        self.handler = handler
        self.config = config
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused_connections = 0
        submit = getattr(handler, "submit", None)
        self.submit: Callable[[Inbound, Reply], None] = (
            submit if callable(submit) else self._submit_async
        )

    def _submit_async(self, inbound: Inbound, reply: Reply) -> None:
        task = asyncio.ensure_future(self._run_handler(inbound, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, inbound: Inbound, reply: Reply) -> None:
        try:
            answer = await self.handler(inbound)
        except Exception:
            log.exception("mllp: handler failed for a frame from %s", inbound.peer)
            reply(_FAILED)  # type: ignore[arg-type]
            return
        reply(answer)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._server = await loop.create_server(
            lambda: _Connection(self),
            cfg.host,
            cfg.port,
            ssl=cfg.ssl,
            ssl_handshake_timeout=cfg.read_timeout if cfg.ssl else None,
            reuse_address=True,
            backlog=512,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        assert self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting, let running handlers finish, then close every connection."""
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + self.config.read_timeout
        while any(c.pending for c in self._connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None


class _Connection(asyncio.Protocol):
    def __init__(self, server: MllpServer) -> None:
        self.server = server
        cfg = server.config
        self.framer = Framer(cfg.max_message_bytes)
        # One slot per frame, in arrival order; answers are written from the head.
        self.pending: deque[list[object]] = deque()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = False
        self.eof = False
        self.paused = False
        self.last_byte = time.monotonic()
        self.busy_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.server._connections) >= self.server.config.max_connections:
            self.server.refused_connections += 1
            log.warning("mllp: refusing %s, connection limit reached", self.peer)
            self.closed = True
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server._connections.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now = time.monotonic()
        self.last_byte = now
        frames = self.framer.feed(data)
        if self.framer.busy:
            if self.busy_since is None:
                self.busy_since = now
        else:
            self.busy_since = None
        for payload, size, oversized in frames:
            slot: list[object] = [_WAITING]
            self.pending.append(slot)
            try:
                self.server.submit(
                    Inbound(payload, self.peer, size, oversized), partial(self._reply, slot)
                )
            except Exception:
                log.exception("mllp: handler failed for a frame from %s", self.peer)
                self.abort()
                return
            if self.transport is None or self.transport.is_closing():
                return
        if len(self.pending) >= self.server.config.max_pipelined and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # Answer what is pending, then close (a half-closed client still reads ACKs).
        self.eof = True
        if not self.pending:
            self.abort()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.server._connections.discard(self)

    # -- answers ---------------------------------------------------------------------------

    def _reply(self, slot: list[object], answer: object) -> None:
        slot[0] = answer
        pending = self.pending
        while pending and pending[0][0] is not _WAITING:
            done = pending.popleft()[0]
            if self.closed or self.transport is None:
                continue
            if done is _FAILED:
                self.abort()
                continue
            if isinstance(done, bytes):
                self.transport.write(frame(done))
        if self.paused and len(pending) < self.server.config.max_pipelined // 2:
            self.paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        if self.eof and not pending:
            self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _arm(self) -> None:
        cfg = self.server.config
        step = (
            cfg.read_timeout
            if cfg.idle_timeout is None
            else min(cfg.read_timeout, cfg.idle_timeout)
        )
        self.timer = asyncio.get_running_loop().call_later(max(step / 4, 0.05), self._tick)

    def _tick(self) -> None:
        if self.closed:
            return
        cfg = self.server.config
        now = time.monotonic()
        if self.busy_since is not None and now - self.busy_since >= cfg.read_timeout:
            log.info(
                "mllp: dropping %s, incomplete frame or junk for %.1fs", self.peer, cfg.read_timeout
            )
            self.abort()
            return
        if (
            cfg.idle_timeout is not None
            and not self.pending
            and now - self.last_byte >= cfg.idle_timeout
        ):
            log.info("mllp: closing %s, idle for %.1fs", self.peer, cfg.idle_timeout)
            self.abort()
            return
        self._arm()
