"""Structure checks at intake: the AA / AE / AR decision and its precise reasons.

AR (refused, resending will not help): the header cannot be processed, the message type,
trigger event, version or processing id is not supported, or the sender is unknown.
AE (content error): a segment or field the mapping needs is missing, or a date is invalid.
Standard-required parts the mapping can do without (EVN, PID-5 ...) give a warning (ERR
severity W) in an AA rather than refusing a real hospital's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from adapters.hl7v2 import timestamps
from adapters.hl7v2.ack import Problem
from adapters.hl7v2.message import Message, Segment

Decision = Literal["AA", "AE", "AR"]

_VERSION = re.compile(r"^2\.(2|3|3\.1|4|5|5\.1|6|7|7\.1|8|8\.1|8\.2)$")
_PROCESSING = frozenset({"P", "T", "D"})
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")

# (segment, field, component, label) of date/time values the mapping reads.
_DATES: tuple[tuple[str, int, int, str], ...] = (
    ("MSH", 7, 1, "date/time of message"),
    ("EVN", 2, 1, "recorded date/time"),
    ("EVN", 6, 1, "event occurred"),
    ("PID", 7, 1, "date/time of birth"),
    ("PID", 29, 1, "patient death date and time"),
    ("PV1", 44, 1, "admit date/time"),
    ("PV1", 45, 1, "discharge date/time"),
    ("AL1", 6, 1, "identification date"),
    ("DG1", 5, 1, "diagnosis date/time"),
    ("IN1", 12, 1, "plan effective date"),
    ("IN1", 13, 1, "plan expiration date"),
    ("ORC", 9, 1, "date/time of transaction"),
    ("OBR", 7, 1, "observation date/time"),
    ("OBR", 8, 1, "observation end date/time"),
    ("OBR", 22, 1, "results rpt/status chng date/time"),
    ("OBX", 14, 1, "date/time of the observation"),
    ("OBX", 19, 1, "date/time of the analysis"),
    ("SPM", 17, 1, "specimen collection date/time"),
    ("SPM", 18, 1, "specimen received date/time"),
    ("TQ1", 7, 1, "start date/time"),
    ("TQ1", 8, 1, "end date/time"),
    ("SCH", 11, 4, "appointment timing start"),
    ("SCH", 11, 5, "appointment timing end"),
    ("AIS", 4, 1, "start date/time"),
    ("AIG", 8, 1, "start date/time"),
    ("AIL", 6, 1, "start date/time"),
    ("AIP", 6, 1, "start date/time"),
    ("TXA", 4, 1, "activity date/time"),
    ("TXA", 6, 1, "origination date/time"),
    ("RXA", 3, 1, "date/time start of administration"),
    ("RXA", 4, 1, "date/time end of administration"),
    ("RXA", 16, 1, "substance expiration date"),
)


_DATES_BY_SEGMENT: dict[str, tuple[tuple[int, int, str], ...]] = {}
for _name, _n, _comp, _label in _DATES:
    _DATES_BY_SEGMENT[_name] = (*_DATES_BY_SEGMENT.get(_name, ()), (_n, _comp, _label))


@dataclass(frozen=True)
class Profile:
    """What one supported message type needs to be mapped."""

    code: str
    events: frozenset[str]
    segments: tuple[str, ...]
    """Segments that must be present (AE when missing)."""
    fields: tuple[tuple[str, int, str], ...] = ()
    """(segment, field, label) that must be valued in every occurrence (AE)."""
    advised: tuple[tuple[str, int, str], ...] = ()
    """Standard-required fields the mapping can do without (warning)."""
    advised_segments: tuple[str, ...] = ()
    observation_values: bool = False
    """OBX-5 is mapped by its OBX-2 type (numbers and dates must be valid)."""

    @cached_property
    def fields_by_segment(self) -> dict[str, list[tuple[str, int, str]]]:
        return _by_segment(self.fields)

    @cached_property
    def advised_by_segment(self) -> dict[str, list[tuple[str, int, str]]]:
        return _by_segment(self.advised)

    @cached_property
    def watched(self) -> frozenset[str]:
        """Segments with fields to check."""
        return frozenset(
            [*self.fields_by_segment, *self.advised_by_segment, *_DATES_BY_SEGMENT, "OBX"]
        )


def _by_segment(
    items: tuple[tuple[str, int, str], ...],
) -> dict[str, list[tuple[str, int, str]]]:
    out: dict[str, list[tuple[str, int, str]]] = {}
    for item in items:
        out.setdefault(item[0], []).append(item)
    return out


_ADT_ENCOUNTER = frozenset(
    {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13"}
)
_ADT_PERSON = frozenset({"A28", "A31"})

PROFILES: tuple[Profile, ...] = (
    Profile(
        "ADT",
        _ADT_ENCOUNTER,
        ("PID", "PV1"),
        (("PID", 3, "patient identifier list"), ("PV1", 2, "patient class")),
        (("PID", 5, "patient name"),),
        ("EVN",),
    ),
    Profile(
        "ADT",
        _ADT_PERSON,
        ("PID",),
        (("PID", 3, "patient identifier list"),),
        (("PID", 5, "patient name"),),
        ("EVN",),
    ),
    Profile(
        "ADT",
        frozenset({"A40"}),
        ("PID", "MRG"),
        (("PID", 3, "patient identifier list"), ("MRG", 1, "prior patient identifier list")),
        (),
        ("EVN",),
    ),
    Profile(
        "ORU",
        frozenset({"R01"}),
        ("PID", "OBR"),
        (
            ("PID", 3, "patient identifier list"),
            ("OBR", 4, "universal service identifier"),
            ("OBX", 3, "observation identifier"),
        ),
        (("OBX", 11, "observation result status"),),
        observation_values=True,
    ),
    Profile(
        "ORM",
        frozenset({"O01"}),
        ("PID", "ORC"),
        (("PID", 3, "patient identifier list"), ("ORC", 1, "order control")),
    ),
    Profile(
        "OML",
        frozenset({"O21"}),
        ("PID", "ORC", "OBR"),
        (
            ("PID", 3, "patient identifier list"),
            ("ORC", 1, "order control"),
            ("OBR", 4, "universal service identifier"),
        ),
    ),
    Profile(
        "SIU",
        frozenset({"S12", "S13", "S14", "S15"}),
        ("SCH", "PID"),
        (("PID", 3, "patient identifier list"),),
    ),
    Profile(
        "MDM",
        frozenset({"T02"}),
        ("PID", "TXA", "OBX"),
        (("PID", 3, "patient identifier list"), ("TXA", 2, "document type")),
        (),
        ("EVN", "PV1"),
    ),
    Profile(
        "VXU",
        frozenset({"V04"}),
        ("PID", "RXA"),
        (
            ("PID", 3, "patient identifier list"),
            ("RXA", 3, "date/time start of administration"),
            ("RXA", 5, "administered code"),
        ),
    ),
)

SUPPORTED_CODES = frozenset(p.code for p in PROFILES)


def profile_for(code: str, event: str) -> Profile | None:
    for p in PROFILES:
        if p.code == code and event in p.events:
            return p
    return None


def supported_types() -> list[str]:
    return sorted(f"{p.code}^{e}" for p in PROFILES for e in p.events)


@dataclass(frozen=True)
class Verdict:
    """The intake's decision on one message."""

    decision: Decision
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity in ("E", "F"))

    @property
    def reason(self) -> str:
        """Errors first; empty for a clean AA."""
        shown = self.errors or self.problems
        return "; ".join(p.describe() for p in shown)


def refuse(*problems: Problem) -> Verdict:
    return Verdict("AR", problems)


def check_header(msg: Message) -> list[Problem]:
    """MSH problems that make the message unprocessable (AR)."""
    out: list[Problem] = []
    code, event = msg.message_code, msg.trigger_event
    if not code:
        out.append(Problem(101, "message type is required", segment="MSH", field=9))
    if not msg.control_id:
        out.append(Problem(101, "message control id is required", segment="MSH", field=10))
    processing = msg.processing_id
    if not processing:
        out.append(Problem(101, "processing id is required", segment="MSH", field=11))
    elif processing.upper() not in _PROCESSING:
        out.append(
            Problem(202, f"processing id {processing!r} is not P, T or D", segment="MSH", field=11)
        )
    version = msg.version
    if not version:
        out.append(Problem(101, "version id is required", segment="MSH", field=12))
    elif not _VERSION.match(version):
        out.append(
            Problem(
                203,
                f"version {version!r} is not supported (2.2 to 2.8)",
                segment="MSH",
                field=12,
            )
        )
    if code and not out:
        if code not in SUPPORTED_CODES:
            out.append(
                Problem(
                    200,
                    f"message type {msg.message_type} is not supported; supported: "
                    + ", ".join(supported_types()),
                    segment="MSH",
                    field=9,
                )
            )
        elif not event:
            out.append(
                Problem(101, "trigger event is required", segment="MSH", field=9, component=2)
            )
        elif profile_for(code, event) is None:
            events = ", ".join(sorted(e for p in PROFILES if p.code == code for e in p.events))
            out.append(
                Problem(
                    201,
                    f"trigger event {code}^{event} is not supported"
                    f"; supported {code} events: {events}",
                    segment="MSH",
                    field=9,
                    component=2,
                )
            )
    return out


def check_content(msg: Message, profile: Profile) -> list[Problem]:
    """Missing segments and fields, stray headers, invalid dates (AE) and warnings."""
    out: list[Problem] = []
    names = [s.name for s in msg.segments]
    for i, seg in enumerate(msg.segments[1:], start=2):
        if seg.name == "MSH":
            out.append(
                Problem(
                    100,
                    f"a second MSH at segment {i}: one message per frame",
                    segment="MSH",
                    sequence=2,
                )
            )
            break
        if not _valid_name(seg.name):
            out.append(Problem(100, f"segment {i} has no valid segment id ({seg.name[:10]!r})"))
            break
    for name in profile.segments:
        if name not in names:
            out.append(Problem(100, f"required segment {name} is missing", segment=name))
    for name in profile.advised_segments:
        if name not in names:
            out.append(
                Problem(
                    100, f"segment {name} is missing (required by the standard)", "W", segment=name
                )
            )
    counts: dict[str, int] = {}
    required = profile.fields_by_segment
    advised = profile.advised_by_segment
    watched = profile.watched
    for seg in msg.segments:
        counts[seg.name] = counts.get(seg.name, 0) + 1
        if seg.name not in watched:
            continue
        seq = counts[seg.name]
        for name, n, label in required.get(seg.name, ()):
            if not seg.has(n):
                out.append(
                    Problem(101, f"{label} is required", segment=name, sequence=seq, field=n)
                )
        for name, n, label in advised.get(seg.name, ()):
            if not seg.has(n):
                out.append(
                    Problem(
                        101,
                        f"{label} is empty (required by the standard)",
                        "W",
                        segment=name,
                        sequence=seq,
                        field=n,
                    )
                )
        if seg.name in _DATES_BY_SEGMENT:
            out.extend(_check_dates(seg, seq))
        if seg.name == "OBX" and profile.observation_values:
            out.extend(_check_value(seg, seq))
    return out


_NAMES: dict[str, bool] = {}


def _valid_name(name: str) -> bool:
    known = _NAMES.get(name)
    if known is None:
        known = bool(_SEGMENT_NAME.match(name))
        if len(_NAMES) < 4096:  # a cache of immutable facts, bounded against junk
            _NAMES[name] = known
    return known


def _check_dates(seg: Segment, seq: int) -> Iterable[Problem]:
    for n, comp, label in _DATES_BY_SEGMENT.get(seg.name, ()):
        value = seg.value(n, comp)
        if not value:
            continue
        why = timestamps.check(value)
        if why:
            yield Problem(102, f"{label}: {why}", segment=seg.name, sequence=seq, field=n)


_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")


def _check_value(obx: Segment, seq: int) -> list[Problem]:
    kind = obx.value(2).strip().upper()
    if kind not in ("NM", "SN", "DT", "TS", "DTM"):
        return []
    out = []
    for rep in obx.reps(5):
        if kind == "NM":
            bad = [rep.text] if rep.text.strip() and not _NUMBER.match(rep.text) else []
        elif kind == "SN":
            bad = [v for v in (rep[2], rep[4]) if v.strip() and not _NUMBER.match(v)]
        else:
            why = timestamps.check(rep[1]) if rep[1] else None
            if why:
                text = f"observation value ({kind}): {why}"
                out.append(Problem(102, text, segment="OBX", sequence=seq, field=5))
            continue
        for value in bad:
            text = f"observation value ({kind}) {value!r} is not a number"
            out.append(Problem(102, text, segment="OBX", sequence=seq, field=5))
    return out


def check_message(msg: Message) -> Verdict:
    """The structure decision for a parsed message from a known sender."""
    header = check_header(msg)
    if header:
        return Verdict("AR", tuple(header))
    profile = profile_for(msg.message_code, msg.trigger_event)
    assert profile is not None
    problems = check_content(msg, profile)
    decision: Decision = "AE" if any(p.severity == "E" for p in problems) else "AA"
    return Verdict(decision, tuple(problems))
