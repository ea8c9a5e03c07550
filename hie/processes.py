"""Child processes of the exchange's long-running commands (listeners, mapping workers)."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    # A child must not outlive its parent, even if the parent is killed outright.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_hie(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run ``hie <args>`` as a child process that ends when this process ends (with
    ``env`` as its environment, else this process's).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: call this from
    a thread that lives as long as the child should (the main thread, or a supervisor's).
    """
    return subprocess.Popen(
        [sys.executable, "-m", "hie", *args], env=env, preexec_fn=_die_with_parent
    )


def stop_all(children: Sequence[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM every child, then SIGKILL those still running after ``timeout``."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class _Child:
    args: tuple[str, ...]
    env: dict[str, str] | None
    process: subprocess.Popen[bytes] | None
    started: float
    delay: float  # the wait before the next restart
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Keeps ``hie`` child processes running: one that dies (killed, crashed) is started
    again with the same arguments, after a delay that doubles from ``initial_delay`` up
    to ``max_delay`` while it keeps dying within ``stable_after`` seconds of its start,
    and each death and restart is logged. A thread of its own watches the children and
    starts the replacements (so they die with that thread's process, see
    :func:`spawn_hie`); :meth:`stop` ends the watch and the children."""

    def __init__(
        self,
        *,
        name: str = "hie",
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 30.0,
        check_every: float = 0.2,
        spawn: Callable[..., subprocess.Popen[bytes]] = spawn_hie,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.check_every = check_every
        self._spawn = spawn
        self._clock = clock
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop_timeout = 15.0

    def add(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        """Supervise ``hie <args>`` (with ``env``, else this process's environment at
        each start): started by :meth:`start`, or soon if already started."""
        copied = dict(env) if env is not None else None
        child = _Child(args, copied, None, 0.0, self.initial_delay, restart_at=0.0)
        with self._lock:
            self._children.append(child)

    def start(self) -> None:
        self._stop.clear()
        self._started.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"{self.name}-supervisor", daemon=True
        )
        self._thread.start()
        self._started.wait(timeout=60)  # the first children are forked by the watch thread

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return [c.process for c in self._children if c.process is not None]

    def stop(self, timeout: float = 15) -> None:
        """Stop watching, then SIGTERM the children (SIGKILL after ``timeout``)."""
        self._stop_timeout = timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout + 30)
            self._thread = None

    def _run(self) -> None:
        try:
            self._check()
        finally:
            self._started.set()
        try:
            while not self._stop.wait(self.check_every):
                self._check()
        finally:
            # Children forked by this thread get SIGTERM when it ends anyway; stop them
            # here so that the wait (and a SIGKILL if need be) happens.
            stop_all(self.processes, self._stop_timeout)

    def _check(self) -> None:
        now = self._clock()
        with self._lock:
            children = list(self._children)
        for child in children:
            process = child.process
            if process is not None:
                code = process.poll()
                if code is None:
                    continue
                lived = now - child.started
                if lived >= self.stable_after:
                    child.delay = self.initial_delay
                log.warning(
                    "%s: child %d (%s) %s after %.1f s; restarting it in %.1f s",
                    self.name,
                    process.pid,
                    " ".join(child.args),
                    describe_exit(code),
                    lived,
                    child.delay,
                )
                child.process = None
                child.restart_at = now + child.delay
                child.delay = min(child.delay * 2, self.max_delay)
            if child.restart_at is not None and now >= child.restart_at:
                try:
                    child.process = self._spawn(*child.args, env=child.env)
                except OSError as exc:
                    log.error("%s: cannot start %s: %s", self.name, " ".join(child.args), exc)
                    child.restart_at = now + child.delay
                    child.delay = min(child.delay * 2, self.max_delay)
                    continue
                if child.started:
                    child.restarts += 1
                    log.warning(
                        "%s: restarted %s as pid %d (restart %d)",
                        self.name,
                        " ".join(child.args),
                        child.process.pid,
                        child.restarts,
                    )
                child.started = now
                child.restart_at = None
