"""Read what the index needs from a received data set, without touching the pixels.

:func:`read_header` is on the path every instance takes, so it parses only up to the
Pixel Data (``stop_before_pixels``) and reads the simple values straight from the raw
element bytes. Before that, :func:`check_complete` walks the element *headers* of the
whole stream (no values are read) so that a truncated stream or a missing delimiter is
refused instead of stored.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName


class HeaderError(Exception):
    """The data set cannot be stored; ``status`` is the C-STORE failure status."""

    status = 0xC000

    def __init__(self, comment: str) -> None:
        super().__init__(comment)
        self.comment = comment[:64]  # (0000,0902) Error Comment is LO


class MalformedDataset(HeaderError):
    """0xC000 (Cannot understand): the stream does not parse."""

    status = 0xC000


class DatasetMismatch(HeaderError):
    """0xA900 (Data Set does not match SOP Class): required attributes missing or wrong."""

    status = 0xA900


_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    patient_name: str
    name_alphabetic: str
    name_ideographic: str
    name_phonetic: str
    birth_date: str | None
    sex: str | None
    study_date: str | None
    study_time: str | None
    accession_number: str
    study_id: str
    study_description: str
    referring_physician: str
    timezone_offset: str | None
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    series_date: str | None
    series_time: str | None
    instance_number: int | None
    number_of_frames: int | None
    rows: int | None
    columns: int | None


def check_complete(dataset: bytes, transfer_syntax_uid: str) -> None:
    """Raise MalformedDataset unless ``dataset`` ends exactly after its last element."""
    _walk(dataset, transfer_syntax_uid)


def _walk(dataset: bytes, transfer_syntax_uid: str) -> _Walker:
    ts = UID(transfer_syntax_uid)
    if not ts.is_transfer_syntax:
        raise MalformedDataset(f"unknown transfer syntax {transfer_syntax_uid}")
    buffer = dataset
    if ts.is_deflated:
        try:
            buffer = zlib.decompress(dataset, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise MalformedDataset(f"deflate stream: {exc}") from exc
    walker = _Walker(buffer, ts.is_implicit_VR, ts.is_little_endian)
    walker.dataset(0, len(buffer), until_item_end=False, depth=0)
    return walker


# Every top-level element the index reads (see _header), and the character set.
_WANTED = frozenset(
    {
        0x00080005, 0x00080016, 0x00080018, 0x00080020, 0x00080021, 0x00080030,
        0x00080031, 0x00080050, 0x00080060, 0x00080090, 0x00080201, 0x00081030,
        0x0008103E, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00180015,
        0x0020000D, 0x0020000E, 0x00200010, 0x00200011, 0x00200013, 0x00280008,
        0x00280010, 0x00280011,
    }
)  # fmt: skip


class _Walker:
    def __init__(self, buffer: bytes, implicit: bool, little: bool) -> None:
        self.buffer = buffer
        self.implicit = implicit
        self.little = little
        # top-level elements of _WANTED: tag -> (VR or "", value offset, value length)
        self.found: dict[int, tuple[str, int, int]] = {}
        self.tag_fmt = "<HH" if little else ">HH"
        self.u16 = "<H" if little else ">H"
        self.u32 = "<L" if little else ">L"

    def _tag(self, pos: int, end: int) -> int:
        if pos + 8 > end:
            raise MalformedDataset(f"truncated element header at byte {pos}")
        group, element = struct.unpack_from(self.tag_fmt, self.buffer, pos)
        return int(group) << 16 | int(element)

    def dataset(self, pos: int, end: int, *, until_item_end: bool, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise MalformedDataset("sequences nested too deep")
        # Runs for every element of every instance: locals and one unpack per header.
        buffer, implicit, found = self.buffer, self.implicit, self.found
        endian = "<" if self.little else ">"
        tag_u32 = struct.Struct(endian + "HHL").unpack_from
        tag_vr_u16 = struct.Struct(endian + "HH2sH").unpack_from
        u32 = struct.Struct(endian + "L").unpack_from
        collect = depth == 0
        while pos < end:
            if pos + 8 > end:
                raise MalformedDataset(f"truncated element header at byte {pos}")
            vr = b""
            if implicit:
                group, element, length = tag_u32(buffer, pos)
                tag = group << 16 | element
                header = 8
            else:
                group, element, vr, length = tag_vr_u16(buffer, pos)
                tag = group << 16 | element
                header = 8
                if group != 0xFFFE:
                    if not (vr.isalpha() and vr.isupper()):
                        raise MalformedDataset(f"invalid VR at byte {pos}")
                    if vr in _LONG_VRS:
                        if pos + 12 > end:
                            raise MalformedDataset(f"truncated element header at byte {pos}")
                        (length,) = u32(buffer, pos + 8)
                        header = 12
            if group == 0xFFFE:
                if tag == _ITEM_END and until_item_end:
                    return pos + 8
                raise MalformedDataset(f"unexpected delimiter ({tag:08X}) at byte {pos}")
            pos += header
            if length == _UNDEFINED:
                # UN of undefined length holds an implicit VR little endian sequence.
                nested = self if vr != b"UN" else _Walker(buffer, True, True)
                pos = nested.items(pos, end, depth + 1)
            else:
                if collect and tag in _WANTED:
                    found[tag] = (vr.decode("ascii"), pos, length)
                pos += length
                if pos > end:
                    raise MalformedDataset(f"element ({tag:08X}) runs past the end of the data")
        if until_item_end:
            raise MalformedDataset("item without its delimiter at the end of the data")
        return pos

    def items(self, pos: int, end: int, depth: int) -> int:
        while pos < end:
            tag = self._tag(pos, end)
            (length,) = struct.unpack_from(self.u32, self.buffer, pos + 4)
            pos += 8
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise MalformedDataset(f"expected an item ({tag:08X}) at byte {pos - 8}")
            if length == _UNDEFINED:
                pos = self.dataset(pos, end, until_item_end=True, depth=depth)
            else:
                pos += length
                if pos > end:
                    raise MalformedDataset("item runs past the end of the data")
        raise MalformedDataset("sequence or pixel data without its delimiter (end of data)")


def read_header(
    meta: bytes, dataset: bytes, transfer_syntax_uid: str, *, check: bool = True
) -> InstanceHeader:
    """Parse the attributes the index needs from a received data set.

    ``meta`` is the preamble and file meta (see :func:`adapters.dicom.files.file_meta_bytes`).
    Raises MalformedDataset (0xC000) or DatasetMismatch (0xA900).
    """
    ts = UID(transfer_syntax_uid)
    walker = _walk(dataset, transfer_syntax_uid) if check else None
    try:
        if ts.is_deflated:
            ds: Dataset = dcmread(BytesIO(meta + dataset), stop_before_pixels=True)
        elif walker is not None:
            ds = _collected(walker)  # the check's one pass found the elements
        else:
            # Every attribute the index reads is at or before (0028,0011) Columns.
            ds = read_dataset(
                BytesIO(dataset), ts.is_implicit_VR, ts.is_little_endian, stop_when=_past_header
            )
        return _header(ds)
    except HeaderError:
        raise
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError) as exc:
        raise MalformedDataset(f"cannot parse data set: {exc}") from exc


def _collected(walker: _Walker) -> Dataset:
    """A data set of the walked stream's wanted elements, undecoded until read (as
    ``read_dataset`` would build it, without parsing the ~200 elements in between)."""
    buffer, implicit, little = walker.buffer, walker.implicit, walker.little
    raw: dict[BaseTag, RawDataElement | DataElement] = {
        BaseTag(tag): RawDataElement(
            BaseTag(tag),
            vr or None,
            length,
            buffer[offset : offset + length],
            offset,
            implicit,
            little,
        )
        for tag, (vr, offset, length) in sorted(walker.found.items())
    }
    ds = Dataset(raw)
    encoding: str | list[str] = default_encoding
    charset = raw.get(BaseTag(0x00080005))
    if isinstance(charset, RawDataElement):
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    ds.set_original_encoding(implicit, little, encoding)
    return ds


def _past_header(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > 0x00280011


def _header(ds: Dataset) -> InstanceHeader:
    sop_class = _uid(ds, 0x00080016, "SOPClassUID", required=True)
    sop_instance = _uid(ds, 0x00080018, "SOPInstanceUID", required=True)
    study = _uid(ds, 0x0020000D, "StudyInstanceUID", required=True)
    series = _uid(ds, 0x0020000E, "SeriesInstanceUID", required=True)
    name = _person_name(ds, 0x00100010)
    frames_text = _text(ds, 0x00280008)
    frames = _int(frames_text)
    if frames_text and frames is None:
        raise MalformedDataset(f"NumberOfFrames {frames_text!r} is not an IS value")
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study,
        series_uid=series,
        patient_id=_decoded(ds, 0x00100020),
        patient_name=str(name) if name is not None else "",
        name_alphabetic=name.alphabetic if name is not None else "",
        name_ideographic=name.ideographic if name is not None else "",
        name_phonetic=name.phonetic if name is not None else "",
        birth_date=_date(_text(ds, 0x00100030)),
        sex=_text(ds, 0x00100040) or None,
        study_date=_date(_text(ds, 0x00080020)),
        study_time=_time(_text(ds, 0x00080030)),
        accession_number=_decoded(ds, 0x00080050),
        study_id=_decoded(ds, 0x00200010),
        study_description=_decoded(ds, 0x00081030),
        referring_physician=str(_person_name(ds, 0x00080090) or ""),
        timezone_offset=_text(ds, 0x00080201) or None,
        modality=_text(ds, 0x00080060),
        series_number=_int(_text(ds, 0x00200011)),
        series_description=_decoded(ds, 0x0008103E),
        body_part=_text(ds, 0x00180015),
        series_date=_date(_text(ds, 0x00080021)),
        series_time=_time(_text(ds, 0x00080031)),
        instance_number=_int(_text(ds, 0x00200013)),
        number_of_frames=frames,
        rows=_us(ds, 0x00280010),
        columns=_us(ds, 0x00280011),
    )


def _text(ds: Dataset, tag: int) -> str:
    """A single-byte-text value (CS, DA, TM, IS, UI...) from the raw bytes, stripped."""
    if tag not in ds:
        return ""
    elem = ds.get_item(tag)
    value = elem.value if isinstance(elem, RawDataElement) else ds[tag].value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    return str(value).strip(" \x00")


def _decoded(ds: Dataset, tag: int) -> str:
    """A text value decoded with the data set's Specific Character Set."""
    if tag not in ds:
        return ""
    value = ds[tag].value
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _person_name(ds: Dataset, tag: int) -> PersonName | None:
    if tag not in ds:
        return None
    value = ds[tag].value
    if isinstance(value, PersonName):
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], PersonName):
        return value[0]
    return None


def _uid(ds: Dataset, tag: int, keyword: str, *, required: bool) -> str:
    value = _text(ds, tag)
    if not value:
        if required:
            raise DatasetMismatch(f"{keyword} is missing")
        return ""
    if len(value) > 64 or not _UID.match(value):
        raise MalformedDataset(f"{keyword} is not a valid UID")
    return value


def _int(text: str) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _us(ds: Dataset, tag: int) -> int | None:
    if tag not in ds:
        return None
    value = ds[tag].value
    return value if isinstance(value, int) else None


def _date(text: str) -> str | None:
    text = text.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    return text if _DATE.match(text) else None


def _time(text: str) -> str | None:
    text = text.replace(":", "")
    return normalize_time(text) if _TIME.match(text) else None


def normalize_time(text: str) -> str:
    """``HH[MM[SS[.f]]]`` padded to ``HHMMSS[.f]`` so that string order is time order."""
    base, dot, fraction = text.partition(".")
    return base.ljust(6, "0") + (dot + fraction if dot else "")
