"""Per-sender strict validation with hl7apy (message structures, field cardinalities).

hl7apy parses about 50 messages per second, so it runs only for senders registered with
``--strict``, and off the event loop. Its findings turn an AA into an AE.
"""

from __future__ import annotations

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from adapters.hl7v2.ack import Problem
from adapters.hl7v2.message import Message, Segment

# hl7apy's library names versions without the trailing ".0"; it has no 2.7.1.
_VERSIONS = {"2.7.1": "2.7"}


def validate_strict(message: Message) -> list[Problem]:
    text = "\r".join(message.delimiters.field.join(_fields(s)) for s in message.segments) + "\r"
    try:
        parsed = parse_message(
            text,
            validation_level=VALIDATION_LEVEL.STRICT,
            find_groups=True,
            force_validation=False,
        )
        parsed.validate()
    except HL7apyException as exc:
        return [Problem(102, f"strict validation (hl7apy): {type(exc).__name__}: {exc}")]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return [Problem(102, f"strict validation (hl7apy) could not parse the message: {exc}")]
    return []


def _fields(segment: Segment) -> list[str]:
    fields = list(segment.fields)
    if segment.name == "MSH":
        # fields[1] is MSH-1 itself; the wire form has it only once.
        return [fields[0], *fields[2:]]
    return fields
