"""Tamper evidence: walking the hash chain and signing and checking its checkpoints.

An edit changes a record's hash; a deletion or a move breaks the link to the next
record (each hash covers the record's number). Someone who rewrites every hash after an
edit is caught by the next signed checkpoint, and a cut-off tail by the last one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hie.storage.ports import GENESIS, ChainLink, Checkpoint, chain_hash


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(seq: int, digest: bytes) -> bytes:
    return b"hie-audit-checkpoint:" + seq.to_bytes(8, "big") + digest


class CheckpointSigner:
    """Signs the chain's head with the server's Ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = key_id(key.public_key())

    def __call__(self, seq: int, digest: bytes) -> tuple[str, bytes]:
        return self.key_id, self._key.sign(_message(seq, digest))


@dataclass(frozen=True, slots=True)
class Verdict:
    records: int
    checkpoints: int
    bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    batches: Iterable[Sequence[ChainLink]],
    checkpoints: Sequence[Checkpoint],
    public: Ed25519PublicKey,
) -> Verdict:
    """Walk the chain from its start; the first bad record ends the walk."""
    for c in checkpoints:
        try:
            public.verify(c.signature, _message(c.seq, c.hash))
        except InvalidSignature:
            return Verdict(0, 0, c.seq, f"the checkpoint at record {c.seq} has a bad signature")
    wanted = {c.seq: c.hash for c in checkpoints}
    next_checkpoint = min(wanted, default=0)
    prev, expected, seen, last_good = GENESIS, 1, 0, 0
    for batch in batches:
        for seq, us, content, stored_prev, digest in batch:
            # The common case in one test; the reason is worked out only on failure.
            if (
                seq != expected
                or stored_prev != prev
                or chain_hash(prev, seq, us, content) != digest
            ):
                return _bad(expected - 1, seen, seq, expected, stored_prev, prev)
            if seq == next_checkpoint:
                if wanted[seq] != digest:
                    return Verdict(
                        expected - 1,
                        seen,
                        last_good + 1,
                        f"the chain was rewritten between records {last_good + 1} and {seq} "
                        f"(the signed checkpoint at {seq} does not match)",
                    )
                last_good = seq
                seen += 1
                next_checkpoint = min((s for s in wanted if s > seq), default=0)
            prev = digest
            expected += 1
    if checkpoints and checkpoints[-1].seq >= expected:
        return Verdict(
            expected - 1,
            seen,
            expected,
            f"records {expected} to {checkpoints[-1].seq} (signed) are missing",
        )
    return Verdict(expected - 1, seen)


def _bad(
    count: int, seen: int, seq: int, expected: int, stored_prev: bytes, prev: bytes
) -> Verdict:
    if seq < expected:
        return Verdict(count, seen, seq, f"record {seq} is out of order")
    if seq > expected:
        return Verdict(
            count, seen, seq, f"record {seq} follows {expected - 1}: records are missing"
        )
    if stored_prev != prev:
        return Verdict(count, seen, seq, f"record {seq} does not link to record {seq - 1}")
    return Verdict(count, seen, seq, f"record {seq} was altered (its hash does not match)")
