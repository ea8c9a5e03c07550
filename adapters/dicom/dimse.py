"""Responses sent without building a pydicom command set.

pynetdicom 3 sends every DIMSE message by filling a pydicom ``Dataset`` with the command
elements, encoding it once to learn the group length and again to send it: ~0.3 ms of
CPU, holding the GIL, for each C-STORE response and for each C-FIND match. Response
command sets are a handful of fixed-size elements (PS3.7 9.3, 10.3), so :func:`install`
gives one accepted association a ``send_msg`` that encodes them directly (Implicit VR
Little Endian, as PS3.7 6.3.1 requires) and fragments the message into P-DATA exactly as
pynetdicom does. Anything else (requests, responses carrying an Error Comment or
another element of a VR it does not encode, or an association with EVT_DIMSE_SENT
handlers bound) goes through pynetdicom's own ``send_msg``. Like ``reactor``, it relies
on pynetdicom 3's internals (pinned ``<4``); the tests compare its bytes with
pynetdicom's and run real peers through it.
"""

from __future__ import annotations

import functools
import struct
import types
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pynetdicom import evt
from pynetdicom.dimse import _RSP_TO_MESSAGE
from pynetdicom.dimse_messages import _COMMAND_SET_KEYWORDS, _DATASET_KEYWORDS, _MESSAGE_TYPES
from pynetdicom.pdu_primitives import P_DATA

_FIELDS = {name: field for field, (name, _) in _MESSAGE_TYPES.items()}
_NO_DATA_SET = 0x0101
_HAS_DATA_SET = 0x0001


@functools.cache
def _layout(message: str) -> tuple[tuple[str, int, str], ...]:
    """(keyword, tag, VR) of a message type's command elements after the group length,
    in tag order; VR "?" for one :func:`encode_command` does not write."""
    out = []
    for keyword in _COMMAND_SET_KEYWORDS[message]:
        if keyword == "CommandGroupLength":
            continue
        tag = tag_for_keyword(keyword)
        assert tag is not None
        vr = dictionary_VR(tag)
        if vr not in ("UI", "US", "UL"):
            vr = "?"  # only ever absent on the fast path
        out.append((keyword, tag, vr))
    return tuple(sorted(out, key=lambda item: item[1]))


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def encode_command(primitive: Any) -> tuple[bytes, bytes] | None:
    """The encoded command set of a response primitive and its data set bytes, or None
    when it needs pynetdicom's general encoder."""
    message_class = _RSP_TO_MESSAGE.get(type(primitive))
    if message_class is None or primitive.MessageIDBeingRespondedTo is None:
        return None
    name = message_class.__name__
    message = name.replace("_", "-")
    layout = _layout(message)
    if getattr(primitive, "_dataset_path", None):
        return None
    data = b""
    data_keyword = _DATASET_KEYWORDS.get(name)
    if data_keyword is not None:
        held = getattr(primitive, data_keyword)
        if held is not None:
            data = held.getvalue() if isinstance(held, BytesIO) else bytes(held)
    parts = []
    for keyword, tag, vr in layout:
        if keyword == "CommandField":
            value: Any = _FIELDS[message]
        elif keyword == "CommandDataSetType":
            value = _HAS_DATA_SET if data else _NO_DATA_SET
        else:
            value = getattr(primitive, keyword, None)
            if value is None:
                continue
        if vr == "US":
            parts.append(_element(tag, struct.pack("<H", int(value))))
        elif vr == "UL":
            parts.append(_element(tag, struct.pack("<I", int(value))))
        elif vr == "UI":
            raw = str(value).encode("ascii")
            parts.append(_element(tag, raw + b"\x00" if len(raw) % 2 else raw))
        else:
            return None
    body = b"".join(parts)
    return _element(0x00000000, struct.pack("<I", len(body))) + body, data


def _fragments(data: bytes, max_pdu: int) -> Iterator[bytes]:
    size = len(data) if max_pdu == 0 else max_pdu - 6
    for start in range(0, len(data), max(size, 1)):
        yield data[start : start + size]


def pdata(context_id: int, command: bytes, data: bytes, max_pdu: int) -> Iterator[P_DATA]:
    """The P-DATA primitives of one message (PS3.8 E.2: command fragments with flag
    bits 01 and 11 on the last, then data set fragments with 00 and 10 on the last)."""
    for flags, stream in ((b"\x01", b"\x03"), command), ((b"\x00", b"\x02"), data):
        pieces = list(_fragments(stream, max_pdu))
        for n, piece in enumerate(pieces):
            primitive = P_DATA()
            last = n == len(pieces) - 1
            primitive.presentation_data_value_list.append(
                (context_id, (flags[1] if last else flags[0]) + piece)
            )
            yield primitive


def install(assoc: Any) -> None:
    """Give an accepted association the direct response encoder."""
    dimse = assoc.dimse
    general: Callable[[Any, int], None] = dimse.send_msg

    def send_msg(self: Any, primitive: Any, context_id: int) -> None:
        encoded = None if assoc.get_handlers(evt.EVT_DIMSE_SENT) else encode_command(primitive)
        if encoded is None:
            general(primitive, context_id)
            return
        command, data = encoded
        for item in pdata(context_id, command, data, self.maximum_pdu_size):
            self.dul.send_pdu(item)

    dimse.send_msg = types.MethodType(send_msg, dimse)
