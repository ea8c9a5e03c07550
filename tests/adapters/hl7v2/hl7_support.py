"""Shared test helpers for the HL7 v2 adapter (imported by conftest.py and the tests).

The exchange here is a test twin of ``hie.exchange.Exchange.transaction`` with the
semantics the adapter relies on: conditional update by identifier (create / update / 412),
``ifNoneExist``, ``urn:uuid:`` references rewritten, all or nothing, and every resource
validated with fhir.resources R4B.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import Engine, text

from adapters.hl7v2.db import make_engine
from adapters.hl7v2.schema import metadata
from adapters.hl7v2.senders import Sender, SenderRegistry
from hie.context import RequestContext
from hie.errors import InvalidResource, Issue, MultipleMatches, PreconditionFailed

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
PG_URL = os.environ.get("HIE_TEST_PG_URL", "")


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def sqlite_engine_at(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    return engine


def postgres_engine() -> Engine:
    engine = make_engine(PG_URL, pool_size=12)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS hl7_inbox, hl7_sender CASCADE"))
    metadata.create_all(engine)
    return engine


def add_sender(registry: SenderRegistry, app: str, facility: str, **kw: Any) -> Sender:
    kw.setdefault("charset", "UTF-8")
    return registry.add(app, facility, kw.pop("organization", "Organization/hosp-1"), **kw)


def run(coro: Any, timeout: float = 60) -> Any:
    """Run a coroutine to completion on a fresh loop (tests stay synchronous)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeExchange:
    """An in-memory FHIR store applying transaction Bundles the way hie.exchange will."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[RequestContext, dict[str, Any]]] = []
        self.fail_with: Exception | None = None
        self.lock = threading.RLock()
        self.groups: list[int] = []  # sizes of the groups applied with transactions()

    # queries -----------------------------------------------------------------------------

    def all(self, rtype: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in sorted(self.resources.items()) if t == rtype]

    def by_identifier(self, rtype: str, system: str, value: str) -> list[dict[str, Any]]:
        return [r for r in self.all(rtype) if _has_identifier(r, system, value)]

    def resolve(self, reference: str) -> dict[str, Any]:
        rtype, _, rid = reference.partition("/")
        return self.resources[(rtype, rid)]

    # the port ----------------------------------------------------------------------------

    def transaction(self, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.fail_with is not None:
                raise self.fail_with
            self.calls.append((ctx, bundle))
            # Resources are replaced, never changed in place: a shallow copy isolates.
            work = dict(self.resources)
            bundle = copy.deepcopy(bundle)
            urls: dict[str, str] = {}
            responses = []
            for i, entry in enumerate(bundle["entry"]):
                resource, request = entry["resource"], entry["request"]
                _validate(resource, i)
                rtype = resource["resourceType"]
                if request["method"] == "PUT":
                    _, _, query = request["url"].partition("?")
                    matches = _search(work, rtype, query)
                    if len(matches) > 1:
                        raise MultipleMatches(f"{request['url']} matches {len(matches)}")
                    rid = matches[0] if matches else uuid.uuid4().hex[:12]
                    status = "200 OK" if matches else "201 Created"
                else:
                    found = _search(work, rtype, request.get("ifNoneExist", ""))
                    if request.get("ifNoneExist") and found:
                        urls[entry["fullUrl"]] = f"{rtype}/{found[0]}"
                        responses.append({"response": {"status": "200 OK"}})
                        continue
                    rid, status = uuid.uuid4().hex[:12], "201 Created"
                resource["id"] = rid
                urls[entry["fullUrl"]] = f"{rtype}/{rid}"
                work[(rtype, rid)] = resource
                responses.append({"response": {"status": status, "location": f"{rtype}/{rid}"}})
            for key, resource in list(work.items()):
                if key in self.resources and self.resources[key] is resource:
                    continue
                _rewrite(resource, urls, work)
            self.resources = work
            return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}

    def transactions(self, items: Any) -> list[dict[str, Any]]:
        """Several Bundles, all or none (the exchange's group commit)."""
        with self.lock:
            saved, calls = self.resources, len(self.calls)
            try:
                out = [self.transaction(ctx, bundle) for ctx, bundle in items]
            except BaseException:
                self.resources = saved
                del self.calls[calls:]
                raise
            self.groups.append(len(out))
            return out


def _has_identifier(resource: dict[str, Any], system: str, value: str) -> bool:
    for ident in resource.get("identifier", []):
        if ident.get("system") == system and ident.get("value") == value:
            return True
    master = resource.get("masterIdentifier")
    return bool(master) and master.get("system") == system and master.get("value") == value


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _split_token(token: str) -> tuple[str, str]:
    i = 0
    while i < len(token):
        if token[i] == "\\":
            i += 2
            continue
        if token[i] == "|":
            return token[:i], _unescape(token[i + 1 :])
        i += 1
    return "", _unescape(token)


def _search(store: dict[tuple[str, str], dict[str, Any]], rtype: str, query: str) -> list[str]:
    if not query:
        return []
    params = parse_qsl(query, keep_blank_values=True)
    found = []
    for (t, rid), resource in store.items():
        if t != rtype:
            continue
        ok = True
        for name, value in params:
            if name == "identifier":
                system, val = _split_token(value)
                ok = ok and _has_identifier(resource, system, val)
            elif name == "_source":
                ok = ok and resource.get("meta", {}).get("source") == value
            else:
                raise AssertionError(f"the twin does not search {name}")
        if ok:
            found.append(rid)
    return found


def _rewrite(node: Any, urls: dict[str, str], store: dict[tuple[str, str], Any]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            if ref in urls:
                node["reference"] = urls[ref]
            elif ref.startswith("urn:uuid:"):
                raise PreconditionFailed(f"unresolved reference {ref}")
            elif "?" in ref:
                rtype, _, query = ref.partition("?")
                hits = _search(store, rtype, query)
                if len(hits) != 1:
                    raise PreconditionFailed(f"{ref} matches {len(hits)} resources")
                node["reference"] = f"{rtype}/{hits[0]}"
        for value in node.values():
            _rewrite(value, urls, store)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, urls, store)


def _validate(resource: dict[str, Any], index: int) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    try:
        model.model_validate(resource)
    except Exception as exc:
        raise InvalidResource(
            f"entry {index}: {exc}",
            [Issue("error", "invalid", str(exc)[:500], (f"Bundle.entry[{index}].resource",))],
        ) from None


# -- a running service and MLLP clients -----------------------------------------------------

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


def mllp_exchange(port: int, payloads: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Send each payload framed on one connection and read one framed answer for each."""
    import socket

    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        buf = b""
        for payload in payloads:
            sock.sendall(SB + payload + EB + CR)
            while EB not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the answer")
                buf += chunk
            start, end = buf.index(SB), buf.index(EB)
            answers.append(buf[start + 1 : end])
            buf = buf[end + 2 :]
    return answers


def msa(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK in any delimiters."""
    for seg in ack.replace(b"\n", b"\r").split(b"\r"):
        if seg.startswith(b"MSA"):
            fields = seg.decode("utf-8", "replace").split(seg.decode()[3])
            return fields[1], fields[2] if len(fields) > 2 else ""
    raise AssertionError(f"no MSA in {ack!r}")


def err_text(ack: bytes, charset: str = "UTF-8") -> str:
    """ERR-8 texts of an ACK (unescaped), joined."""
    from adapters.hl7v2.message import read_message

    message = read_message(ack, charset)
    return "; ".join(seg[8].text for seg in message.all("ERR"))


def set_control_id(raw: bytes, control_id: str) -> bytes:
    head, _, rest = raw.partition(b"\r")
    fs = head[3:4]
    fields = head.split(fs)
    fields[9] = control_id.encode()
    return fs.join(fields) + b"\r" + rest


# -- mapping helpers --------------------------------------------------------------------------


def make_sender(app: str, facility: str, **kw: Any) -> Sender:
    from adapters.hl7v2.senders import default_mrn_system

    kw.setdefault("organization", "Organization/hosp-1")
    kw.setdefault("charset", "UTF-8")
    kw.setdefault("mrn_system", default_mrn_system(app, facility))
    return Sender(id=kw.pop("id", 1), application=app, facility=facility, **kw)


def map_message(raw: bytes | str, sender: Sender | None = None) -> dict[str, Any]:
    """The transaction Bundle for a message (validated by the exchange twin when applied)."""
    from adapters.hl7v2.message import read_message
    from adapters.hl7v2.to_fhir import to_bundle
    from terminology.conceptmaps import load_conceptmaps

    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    message = read_message(data, sender.charset if sender else "UTF-8")
    sender = sender or make_sender(message.sending_application, message.sending_facility)
    return to_bundle(message, sender, _maps(load_conceptmaps))


_MAPS: list[Any] = []


def _maps(loader: Any) -> Any:
    if not _MAPS:
        _MAPS.append(loader())
    return _MAPS[0]


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def request_of(bundle: dict[str, Any], resource: dict[str, Any]) -> dict[str, str]:
    for e in bundle["entry"]:
        if e["resource"] is resource:
            return dict(e["request"])
    raise AssertionError("resource not in bundle")


def resident_id(body17: str) -> str:
    """A GB 11643-1999 number with its ISO 7064 MOD 11-2 check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body17, weights, strict=True))
    return body17 + "10X98765432"[total % 11]
