"""Child processes of the exchange's long-running commands (listeners, mapping workers)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys


def _die_with_parent() -> None:
    # A child must not outlive its parent, even if the parent is killed outright.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_hie(*args: str) -> subprocess.Popen[bytes]:
    """Run ``hie <args>`` as a child process that ends when this process ends."""
    return subprocess.Popen([sys.executable, "-m", "hie", *args], preexec_fn=_die_with_parent)


def stop_all(children: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM every child, then SIGKILL those still running after ``timeout``."""
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
