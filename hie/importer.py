"""Bulk loading of Bundle JSON and NDJSON files through the exchange (``hie import``).

NDJSON resources keep their ids (each line becomes ``PUT Type/id``), so references
between files stay valid whatever order the files are loaded in. Lines are loaded in
transactions of ``chunk`` resources; a failing chunk is retried as a batch so each bad
line is reported on its own while the good ones still load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hie.context import RequestContext
from hie.errors import FhirError
from hie.exchange import Exchange
from hie.fhir.canonical import loads

SUFFIXES = (".json", ".ndjson", ".jsonl")
# Referenced before they reference: loading these first lets conditional references
# such as Location?identifier=... in later files resolve on the first pass.
_FIRST = [
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Device",
    "Medication",
]


@dataclass
class ImportReport:
    files_ok: int = 0
    files_failed: int = 0
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def _first_type(path: Path) -> str:
    if path.suffix not in (".ndjson", ".jsonl"):
        return ""
    try:
        with path.open("rb") as handle:
            head = loads(handle.readline())
    except (FhirError, OSError, UnicodeDecodeError):
        return ""
    return str(head.get("resourceType", "")) if isinstance(head, dict) else ""


def _rank(path: Path) -> tuple[int, str]:
    rtype = _first_type(path)
    return (_FIRST.index(rtype) if rtype in _FIRST else len(_FIRST), str(path))


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Every loadable file under ``paths``, NDJSON of referenced types first."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return sorted(files, key=_rank)


def _entry_for(resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return {"resource": resource, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
    return {"resource": resource, "request": {"method": "POST", "url": str(rtype)}}


class Importer:
    def __init__(self, exchange: Exchange, ctx: RequestContext, *, chunk: int = 500) -> None:
        self._exchange = exchange
        self._ctx = ctx
        self._chunk = chunk
        self.report = ImportReport()

    def load(self, path: Path) -> bool:
        """Load one file; a failure is recorded and does not stop the caller."""
        errors_before = len(self.report.errors)
        try:
            if path.suffix in (".ndjson", ".jsonl"):
                self._ndjson(path)
            else:
                self._json(path)
        except (FhirError, OSError, UnicodeDecodeError) as exc:
            self.report.files_failed += 1
            self.report.errors.append(f"{path}: {exc}")
            return False
        if len(self.report.errors) > errors_before:
            self.report.files_failed += 1
            return False
        self.report.files_ok += 1
        return True

    def _count(self, response: dict[str, Any], where: str) -> None:
        for index, entry in enumerate(response.get("entry") or []):
            status = str(entry.get("response", {}).get("status", ""))
            if status.startswith("201"):
                self.report.created += 1
            elif status.startswith("200"):
                self.report.updated += 1
            else:
                outcome = entry.get("response", {}).get("outcome") or {}
                text = "; ".join(
                    str(i.get("diagnostics", ""))
                    for i in outcome.get("issue", [])
                    if isinstance(i, dict)
                )
                self.report.errors.append(f"{where} entry {index}: {status} {text}")

    def _json(self, path: Path) -> None:
        data = loads(path.read_bytes())
        if not isinstance(data, dict):
            raise FhirError(f"{path.name} holds no FHIR resource")
        if data.get("resourceType") == "Bundle" and data.get("type") in ("transaction", "batch"):
            response = self._exchange.process_bundle(self._ctx, data)
        elif data.get("resourceType") == "Bundle":
            entries = [
                _entry_for(e["resource"])
                for e in data.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
            response = self._exchange.process_bundle(
                self._ctx, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
        else:
            response = self._exchange.process_bundle(
                self._ctx,
                {"resourceType": "Bundle", "type": "transaction", "entry": [_entry_for(data)]},
            )
        self._count(response, str(path))

    def _ndjson(self, path: Path) -> None:
        batch: list[tuple[int, dict[str, Any]]] = []
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    resource = loads(line)
                except FhirError as exc:
                    self.report.errors.append(f"{path}:{number}: {exc}")
                    continue
                if not isinstance(resource, dict):
                    self.report.errors.append(f"{path}:{number}: not a FHIR resource")
                    continue
                batch.append((number, resource))
                if len(batch) >= self._chunk:
                    self._ndjson_chunk(path, batch)
                    batch = []
        if batch:
            self._ndjson_chunk(path, batch)

    def _ndjson_chunk(self, path: Path, lines: list[tuple[int, dict[str, Any]]]) -> None:
        entries = [_entry_for(resource) for _, resource in lines]
        try:
            response = self._exchange.process_bundle(
                self._ctx, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
        except FhirError:
            response = self._exchange.process_bundle(
                self._ctx, {"resourceType": "Bundle", "type": "batch", "entry": entries}
            )
        for (number, _), entry in zip(lines, response.get("entry") or [], strict=False):
            self._count({"entry": [entry]}, f"{path}:{number}")
