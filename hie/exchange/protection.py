"""Protected numbers: resident ID numbers and phone numbers never stored in plain text.

On write, every Identifier under the resident ID system and every ContactPoint of system
``phone``/``sms`` in a resource is *sealed*: its ``value`` becomes the HMAC blind index (so
the search index holds only that, and exact searches still work) and the plain value goes
into an AES-GCM envelope in an extension::

    {"system": "urn:oid:2.16.156.10011.1.3", "value": "i1a2b.Xk2...",
     "extension": [{"url": "urn:hie:sealed", "valueString": "hie1.e3c4.…"}]}

On the way out the extension is opened again: callers whose token holds the scope
:data:`UNMASKED_SCOPE` see the number, everyone else a mask (``510703********1234``,
``138****5678``). Searches by ``identifier=<resident ID system>|<number>`` and by
``telecom``/``phone`` are rewritten to the blind index under every index key (rotation);
so is a bare ``identifier=<number>`` shaped like a resident ID number, which keeps
matching other systems' identifiers too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from hie.context import RequestContext
from hie.crypto import (
    BlindIndex,
    FieldCipher,
    Keyring,
    envelope_key_id,
    mask_phone,
    mask_resident_id,
)
from hie.crypto import normalise as crypto_normalise
from hie.crypto.fields import DecryptionError
from hie.errors import BadRequest
from hie.fhir.identifiers import RESIDENT_ID_SYSTEM
from hie.storage.ports import StoredResource

__all__ = ["SEALED_URL", "UNMASKED_SCOPE", "BytesSealer", "Protection"]

SEALED_URL = "urn:hie:sealed"
UNMASKED_SCOPE = "hie.identity.unmasked"
_MARK = SEALED_URL.encode("ascii")
_PHONE_SYSTEMS = ("phone", "sms")
_PHONE_PARAMS = ("telecom", "phone")
_RID_SHAPE = re.compile(r"\d{17}[\dX]|\d{15}")  # 18 or legacy 15 characters
_CONTEXT = {"resident_id": b"resident_id", "phone": b"phone"}
# How an element that ``_kind`` seals looks in compact JSON (quotes inside strings are
# escaped, so a string value cannot fake one; a false alarm only costs the walk).
_SEALED_SYSTEMS = tuple(
    orjson.dumps({"system": s})[1:-1] for s in (RESIDENT_ID_SYSTEM, *_PHONE_SYSTEMS)
)


def _identity(value: str) -> str:
    return value


class Protection:
    """Seals, opens and masks protected numbers; rewrites searches to the blind index.

    ``keys`` loads the keyring; it is called again when a ciphertext names a key this
    process does not hold yet (``hie keys rotate`` ran elsewhere), so rotation needs no
    restart. ``canonical_resident_id`` upgrades legacy 15-digit numbers, so both forms
    share one blind index.
    """

    def __init__(
        self,
        keys: Callable[[], Keyring],
        *,
        canonical_resident_id: Callable[[str], str] = _identity,
        stamp: Callable[[], object] | None = None,
    ) -> None:
        """``stamp`` says when the keyring changed (the file's mtime): a new current key
        from ``hie keys rotate`` is then used for new values and lookups at once."""
        self._load = keys
        self._canonical = canonical_resident_id
        self._stamp = stamp
        self._seen = stamp() if stamp else None
        self._install(keys())

    def _fresh(self) -> None:
        if self._stamp is not None:
            now = self._stamp()
            if now != self._seen:
                self._seen = now
                self.reload()

    def _install(self, ring: Keyring) -> None:
        self.cipher = FieldCipher(ring.encryption)
        self.blind = BlindIndex(ring.index)

    def reload(self) -> None:
        self._install(self._load())

    # -- values ------------------------------------------------------------------

    def canonical(self, kind: str, value: str) -> str:
        if kind == "resident_id":
            return self._canonical(crypto_normalise.identifier(value))
        if kind == "phone":
            return crypto_normalise.phone(value)
        return crypto_normalise.identifier(value)

    def index(self, kind: str, value: str) -> str:
        """The blind index of a value under the current key (what is stored)."""
        self._fresh()
        return self.blind.value(kind, self.canonical(kind, value))

    def lookup(self, kind: str, value: str) -> list[str]:
        """The blind index under every key (what a lookup matches)."""
        self._fresh()
        return self.blind.lookup_values(kind, self.canonical(kind, value))

    def encrypt(self, plain: str, context: bytes) -> str:
        return self.cipher.encrypt(plain, context)

    def decrypt(self, sealed: str, context: bytes) -> str:
        try:
            return self.cipher.decrypt(sealed, context)
        except DecryptionError:
            if envelope_key_id(sealed) == self.cipher.current_key_id:
                raise
            self.reload()  # a key made by a rotation in another process
            return self.cipher.decrypt(sealed, context)

    # -- resources ---------------------------------------------------------------

    def seal(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A copy of the resource with every protected number sealed."""
        try:
            text = orjson.dumps(resource)
        except orjson.JSONEncodeError:
            text = _SEALED_SYSTEMS[0]  # not plain JSON: walk it
        if not any(marker in text for marker in _SEALED_SYSTEMS):
            # No element names a protected system (most resources): nothing to walk.
            return dict(resource)
        self._fresh()
        out = _walk(resource, self._seal_element)
        assert isinstance(out, dict)
        return out

    def open(self, resource: dict[str, Any], *, masked: bool) -> dict[str, Any]:
        """A copy with sealed numbers opened (masked unless ``masked`` is False)."""
        out = _walk(resource, lambda d: self._open_element(d, masked))
        assert isinstance(out, dict)
        return out

    def masked_for(self, ctx: RequestContext) -> bool:
        return not ctx.scopes.has(UNMASKED_SCOPE)

    def reveal(self, ctx: RequestContext, stored: StoredResource) -> StoredResource:
        """The stored resource as the caller may see it (bytes untouched when nothing is sealed)."""
        if not stored.content or _MARK not in stored.content:
            return stored
        body = self.open(orjson.loads(stored.content), masked=self.masked_for(ctx))
        return replace(stored, content=orjson.dumps(body))

    def reveal_all(
        self, ctx: RequestContext, items: Sequence[StoredResource]
    ) -> list[StoredResource]:
        return [self.reveal(ctx, s) for s in items]

    def plain(self, content: bytes) -> dict[str, Any]:
        """The stored resource with its numbers opened in full (for the exchange's own use)."""
        body: dict[str, Any] = orjson.loads(content)
        return self.open(body, masked=False) if _MARK in content else body

    def _kind(self, d: dict[str, Any]) -> str | None:
        if not isinstance(d.get("value"), str):
            return None
        system = d.get("system")
        if system == RESIDENT_ID_SYSTEM:
            return "resident_id"
        if system in _PHONE_SYSTEMS and "code" not in d:
            return "phone"
        return None

    def _seal_element(self, d: dict[str, Any]) -> dict[str, Any]:
        kind = self._kind(d)
        if kind is None:
            return d
        exts = [e for e in d.get("extension", []) if e.get("url") != SEALED_URL]
        value: str = d["value"]
        if any(e.get("url") == SEALED_URL for e in d.get("extension", [])):
            # already sealed (re-sealing after a rotation): open first
            value = self._sealed_plain(d, kind)
        elif "*" in value:
            raise BadRequest(
                "a masked number cannot be stored; send the full number "
                f"(a token with scope '{UNMASKED_SCOPE}' reads it unmasked)"
            )
        plain = self.canonical(kind, value)
        sealed = self.encrypt(plain, _CONTEXT[kind])
        out = dict(d)
        out["value"] = self.blind.value(kind, plain)
        out["extension"] = [*exts, {"url": SEALED_URL, "valueString": sealed}]
        return out

    def _sealed_plain(self, d: dict[str, Any], kind: str) -> str:
        for e in d.get("extension", []):
            if e.get("url") == SEALED_URL:
                return self.decrypt(str(e.get("valueString", "")), _CONTEXT[kind])
        return str(d["value"])

    def _open_element(self, d: dict[str, Any], masked: bool) -> dict[str, Any]:
        exts = d.get("extension")
        if not exts or not any(e.get("url") == SEALED_URL for e in exts):
            return d
        kind = self._kind(d) or "resident_id"
        plain = self._sealed_plain(d, kind)
        out = dict(d)
        rest = [e for e in exts if e.get("url") != SEALED_URL]
        if rest:
            out["extension"] = rest
        else:
            out.pop("extension")
        if masked:
            plain = mask_resident_id(plain) if kind == "resident_id" else mask_phone(plain)
        out["value"] = plain
        return out

    # -- searches ----------------------------------------------------------------

    def search_params(
        self, resource_type: str, params: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Searches by protected numbers, rewritten to their blind indexes."""
        out: list[tuple[str, str]] = []
        for name, value in params:
            # chained parameters end in the element searched: subject:Patient.identifier
            base = name.rsplit(".", 1)[-1].split(":", 1)[0]
            modifier = name.rsplit(".", 1)[-1].partition(":")[2]
            if base == "identifier" and modifier in ("", "not"):
                value = ",".join(self._rid_alternatives(v) for v in value.split(","))
            elif base in _PHONE_PARAMS and ":" not in name.rsplit(".", 1)[-1]:
                value = ",".join(self._phone_alternatives(v) for v in value.split(","))
            out.append((name, value))
        return out

    def _rid_alternatives(self, v: str) -> str:
        system, sep, number = v.partition("|")
        if not sep:
            # A bare code matches any system, the resident ID's too: keep the code for
            # other systems' identifiers and add the number's blind indexes.
            if not _RID_SHAPE.fullmatch(crypto_normalise.identifier(v)):
                return v
            return ",".join(
                [v, *(f"{RESIDENT_ID_SYSTEM}|{b}" for b in self.lookup("resident_id", v))]
            )
        if system != RESIDENT_ID_SYSTEM or not number or "." in number:
            return v  # another system, or already a blind index
        return ",".join(f"{system}|{b}" for b in self.lookup("resident_id", number))

    def _phone_alternatives(self, v: str) -> str:
        system, sep, number = v.rpartition("|")
        if sep and system not in _PHONE_SYSTEMS:
            return v
        digits = crypto_normalise.phone(number)
        if len(digits) < 5 or not _phone_like(number):
            return v
        prefix = f"{system}|" if sep else ""
        return ",".join(prefix + b for b in self.lookup("phone", number))


class BytesSealer:
    """Seals whole byte strings (an adapter's durable copy of a raw message, which holds
    resident ID and phone numbers): ``hie1.<key>.<AES-GCM>`` as ASCII bytes.

    ``open`` passes through bytes that are not sealed (rows written before sealing)."""

    def __init__(self, protection: Protection, context: bytes) -> None:
        self._p = protection
        self._context = context

    def seal(self, raw: bytes) -> bytes:
        self._p._fresh()
        return self._p.encrypt(raw.decode("latin-1"), self._context).encode("ascii")

    def open(self, stored: bytes) -> bytes:
        if not stored.startswith(b"hie1."):
            return stored
        return self._p.decrypt(stored.decode("ascii"), self._context).encode("latin-1")

    def is_current(self, stored: bytes) -> bool:
        return not stored.startswith(b"hie1.") or self._p.cipher.is_current(stored.decode("ascii"))


def _phone_like(value: str) -> bool:
    return all(c.isdigit() or c in " +-()." for c in value)


def _walk(node: Any, visit: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    if isinstance(node, dict):
        changed = {k: _walk(v, visit) for k, v in node.items()}
        return visit(changed)
    if isinstance(node, list):
        return [_walk(x, visit) for x in node]
    return node
