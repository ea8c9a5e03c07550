"""Delivery of enhanced-mode application ACKs to the sender's ``ack_address`` (host:port).

Intake and workers store the application ACK with the inbox row; this sends each over
MLLP and marks it sent once the sender has acknowledged it. Rows of senders without an
address stay pending (visible to operations) rather than being dropped.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.mllp import EB, SB, frame
from adapters.hl7v2.senders import SenderRegistry

log = logging.getLogger(__name__)

Send = Callable[[str, bytes], bytes]


def mllp_send(address: str, message: bytes, timeout: float = 10.0) -> bytes:
    """Send one framed message and return the framed answer's payload."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as sock:
        sock.sendall(frame(message))
        data = b""
        while EB not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    start = data.find(SB)
    end = data.find(EB)
    if start < 0 or end < 0:
        raise OSError(f"no framed answer from {address}")
    return data[start + 1 : end]


def deliver_application_acks(
    inbox: Inbox, registry: SenderRegistry, send: Send = mllp_send, limit: int = 100
) -> int:
    """Send pending application ACKs; returns how many were delivered."""
    delivered = 0
    addressed = [s.id for s in registry.all() if s.ack_address]
    if not addressed:
        return 0
    for entry_id, sender_id, payload in inbox.pending_app_acks(limit, addressed):
        sender = registry.by_id(sender_id) if sender_id is not None else None
        if sender is None or not sender.ack_address:
            continue
        try:
            answer = send(sender.ack_address, payload)
        except OSError as exc:
            log.warning("hl7: application ACK for inbox %d not delivered: %s", entry_id, exc)
            continue
        if b"MSA" in answer:
            inbox.mark_app_ack_sent(entry_id)
            delivered += 1
    return delivered
