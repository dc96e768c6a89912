"""The release's frame processing (DATA_FORMATS.md 1.2), shared by the environments and the sample writer."""

from __future__ import annotations

import numpy as np

CARRACING_RAW_SIZE = 96  # gym CarRacing's state image, indicator bar included
CARRACING_CROP_ROWS = 84  # rows 0:84 drop the 12-pixel indicator bar
CARRACING_FRAME = (84, 84, 3)


def process_frame(frame: np.ndarray) -> np.ndarray:
    """`utils.process_frame` of the authors' code.

    Car Racing, (96, 96, 3) uint8: crop rows 0:84 -> LANCZOS resize to 84x84
    -> pure black (0, 0, 0) set to white, so the result never holds a black
    pixel. Any other height (the 128x128 obstacle frames) passes unchanged.
    """
    if frame.shape[0] != CARRACING_RAW_SIZE:
        return np.array(frame, dtype=np.uint8)
    from PIL import Image

    height, width, _ = CARRACING_FRAME
    cropped = Image.fromarray(np.ascontiguousarray(frame[:CARRACING_CROP_ROWS]))
    out = np.array(cropped.resize((width, height), Image.LANCZOS), dtype=np.uint8)
    out[np.all(out == 0, axis=-1)] = 255
    return out
