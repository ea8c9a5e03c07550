"""An acceptor loop that serves a DIMSE message as soon as it is decoded.

pynetdicom 3's acceptor thread sleeps a fixed 1 ms before every look at its message
queue, so each C-STORE waits ~1 ms after its last PDU has been decoded: a quarter of an
instance's round trip on loopback. :func:`install` replaces that loop on one accepted
association (from EVT_REQUESTED, before the loop starts) with one that blocks on the
queue instead and checks the same conditions (release, abort, reader thread gone,
network timeout) at least every ``idle_check`` seconds. It relies on pynetdicom 3's
association internals (pinned ``<4`` in setup.cfg); tests run real peers through it.
"""

from __future__ import annotations

import logging
import queue
import types
from typing import Any

from pynetdicom import evt

log = logging.getLogger(__name__)


def install(assoc: Any, idle_check: float = 0.001) -> None:
    assoc._run_reactor = types.MethodType(lambda self: _run(self, idle_check), assoc)


def _run(assoc: Any, idle_check: float) -> None:
    assoc._is_paused = False
    messages: queue.Queue[Any] = assoc.dimse.msg_queue
    while not assoc._kill:
        # Another thread may pause the loop to use the association (send_* methods).
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        try:
            context_id, message = messages.get(timeout=idle_check)
        except queue.Empty:
            message = None
        if message:
            assoc._serve_request(message, context_id)
        if _finished(assoc):
            return


def _finished(assoc: Any) -> bool:
    """The checks of pynetdicom's own loop, in its order; True once the loop must end."""
    if assoc.is_established and assoc.acse.is_release_requested():
        assoc.acse.send_release(is_response=True)
        assoc.is_released = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_RELEASED, {})
        assoc.kill()
        return True
    if assoc.acse.is_aborted():
        assoc.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV fires for the abort
        assoc.is_aborted = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_ABORTED, {})
        assoc.kill()
        return True
    if not assoc.dul.is_alive():
        assoc.kill()
        return True
    if assoc.dul.idle_timer_expired():
        log.error("DICOM network timeout reached")
        if assoc.network_timeout_response == "A-RELEASE":
            assoc._is_paused = True
            assoc._reactor_checkpoint.wait()
            assoc.release()
            assoc._is_paused = False
        else:
            assoc.abort()
        assoc.kill()
        return True
    return False
