"""Rendered frames for viewers (WADO-RS ``/rendered``): PNG or JPEG, windowed.

Pixels come from pydicom (with pylibjpeg/openjpeg for JPEG, JPEG-LS and JPEG 2000), go
through the Modality LUT (rescale slope/intercept) and then the linear VOI window from the
header (Window Center/Width, PS3.3 C.11.2.1.2), or one the caller names; without either
the frame's own range is used. MONOCHROME1 is inverted; colour frames arrive as RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}


class RenderError(Exception):
    """The instance has no frame that can be rendered (no pixels, no such frame...)."""


@dataclass(frozen=True, slots=True)
class Window:
    center: float
    width: float


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (
        hasattr(value, "__getitem__") and not isinstance(value, str)
    ):
        value = value[0]
    return float(value)


def header_window(ds: Any) -> Window | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    return Window(center, width)


def apply_window(values: np.ndarray[Any, Any], window: Window | None) -> np.ndarray[Any, Any]:
    """Map values to 0..255 with the DICOM linear window function."""
    data = values.astype(np.float64)
    if window is None:
        low, high = float(data.min()), float(data.max())
        window = Window((low + high) / 2 + 0.5, max(high - low + 1, 1.0))
    c, w = window.center, window.width
    scaled = ((data - (c - 0.5)) / max(w - 1, 1.0) + 0.5) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_frame(
    path: Path, frame: int, media_type: str, window: Window | None = None, quality: int = 90
) -> bytes:
    """Frame ``frame`` (1-based) of the instance at ``path`` as PNG or JPEG bytes."""
    fmt = MEDIA_TYPES[media_type]
    ds = dcmread(path, stop_before_pixels=True)
    if "Rows" not in ds:
        raise RenderError("the instance has no image")
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 1 <= frame <= frames:
        raise RenderError(f"no frame {frame} (the instance has {frames})")
    try:
        array = pixel_array(path, index=frame - 1)
    except Exception as exc:
        raise RenderError(f"cannot decode pixel data: {exc}") from exc
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples == 1:
        values = apply_modality_lut(array, ds)
        image = apply_window(values, window or header_window(ds))
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            image = 255 - image
        picture = Image.fromarray(image, mode="L")
    else:
        if array.dtype != np.uint8:
            array = apply_window(array, None)
        picture = Image.fromarray(np.ascontiguousarray(array[..., :3]), mode="RGB")
    out = BytesIO()
    if fmt == "JPEG":
        picture.save(out, format="JPEG", quality=quality)
    else:
        picture.save(out, format="PNG")
    return out.getvalue()
