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
    links: Iterable[ChainLink],
    checkpoints: Sequence[Checkpoint],
    public: Ed25519PublicKey,
) -> Verdict:
    """Walk the chain from its start; the first bad record ends the walk."""
    wanted = {c.seq: c for c in checkpoints}
    for c in checkpoints:
        try:
            public.verify(c.signature, _message(c.seq, c.hash))
        except InvalidSignature:
            return Verdict(0, 0, c.seq, f"the checkpoint at record {c.seq} has a bad signature")
    prev, expected, count, seen = GENESIS, 1, 0, 0
    last_good_checkpoint = 0
    for seq, us, content, stored_prev, digest in links:
        if seq != expected:
            if seq < expected:
                return Verdict(count, seen, seq, f"record {seq} is out of order")
            return Verdict(
                count, seen, seq, f"record {seq} follows {expected - 1}: records are missing"
            )
        if stored_prev != prev:
            return Verdict(count, seen, seq, f"record {seq} does not link to record {seq - 1}")
        if chain_hash(prev, seq, us, content) != digest:
            return Verdict(count, seen, seq, f"record {seq} was altered (its hash does not match)")
        checkpoint = wanted.get(seq)
        if checkpoint is not None:
            if checkpoint.hash != digest:
                return Verdict(
                    count,
                    seen,
                    last_good_checkpoint + 1,
                    f"the chain was rewritten between records {last_good_checkpoint + 1} "
                    f"and {seq} (the signed checkpoint at {seq} does not match)",
                )
            last_good_checkpoint = seq
            seen += 1
        prev = digest
        expected += 1
        count += 1
    if checkpoints and checkpoints[-1].seq >= expected:
        missing = checkpoints[-1].seq
        return Verdict(
            count, seen, expected, f"records {expected} to {missing} (signed) are missing"
        )
    return Verdict(count, seen)
