"""The embedded sample's stand-in query frames: each step's z as a heat map (the sample has no trained VAE).

`latent_panels` draws z as a small heat map (blue < 0 < red, white at 0, in a grey outline), which the
product's renderer (`dropj.converters.feedback.query_video.render`) puts into its half of the video. The frames
are a fixture for the video format and the left/right alignment, not the release's pictures.
"""

from __future__ import annotations

import numpy as np

from dropj.converters.feedback.query_video import (BACKGROUND, FRAMES, HEIGHT, MACROBLOCK, PANEL_BOX, WIDTH, canvas,  # noqa: F401
                                          render)

# The z heat map: one CELL x CELL px square per z value inside a MARGIN of white with a grey OUTLINE
# around the cells, so that z = 0 (white) cells stay visible. No lines between cells: in the
# macroblocks that change every frame they would cost more than all the cells (measured).
Z_LIMIT = 2.5  # |z| at full colour; dream z are MDN samples, mostly within +-2.5 (larger values clip)
CELL = 32  # two macroblocks
MARGIN = MACROBLOCK  # keeps the cells on the macroblock grid when the panel's corner is on it
OUTLINE = 2
GREY = 160


def _grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most nearly square rows x cols = n grid, rows <= cols: 32 -> (4, 8), 64 -> (8, 8)."""
    rows = max(r for r in range(1, int(np.sqrt(n)) + 1) if n % r == 0)
    return rows, n // rows


def latent_panels(segment: np.ndarray, n_z: int) -> np.ndarray:
    """The sample's picture of one query clip: each step's z as a heat map.

    segment: (20, n_z + 2 * rnn_size + 3) float rows [z | c | h | scaled action]
    (a data.pkl segment, DATA_FORMATS.md 4.1); only the first n_z columns are
    drawn, as the release decodes only z. z is laid out on the most nearly
    square rows x cols = n_z grid (`_grid_shape`), z[k] in cell
    (k // cols, k % cols): white at 0, pure red at +Z_LIMIT and above, pure
    blue at -Z_LIMIT and below, linear in between.

    Returns (20, rows * CELL + 2 * MARGIN, cols * CELL + 2 * MARGIN, 3) uint8:
    Car Racing's (20, 547) segments with n_z = 32 give (20, 160, 288, 3)
    (4 x 8 cells), the obstacle envs' (20, 2115) with n_z = 64 (20, 288, 288, 3).
    """
    segment = np.asarray(segment)
    if segment.ndim != 2 or segment.shape[0] != FRAMES or not 1 <= n_z <= segment.shape[1]:
        raise ValueError(f"need a ({FRAMES}, >= n_z) segment and 1 <= n_z <= its width, "
                         f"got shape {segment.shape}, n_z={n_z}")
    if not np.isfinite(segment[:, :n_z]).all():
        raise ValueError("z holds NaN or infinite values, which have no colour")
    rows, cols = _grid_shape(n_z)
    t = np.clip(segment[:, :n_z].astype(np.float64) / Z_LIMIT, -1.0, 1.0).reshape(FRAMES, rows, cols)
    fade = np.rint(255.0 * (1.0 - np.abs(t))).astype(np.uint8)  # 255 at 0, 0 at full colour
    full = np.full_like(fade, 255)
    colours = np.where((t >= 0)[..., None],
                       np.stack((full, fade, fade), axis=-1),  # red for z > 0
                       np.stack((fade, fade, full), axis=-1))  # blue for z < 0
    height, width = rows * CELL, cols * CELL
    panels = np.full((FRAMES, height + 2 * MARGIN, width + 2 * MARGIN, 3), BACKGROUND, dtype=np.uint8)
    panels[:, MARGIN - OUTLINE:MARGIN + height + OUTLINE, MARGIN - OUTLINE:MARGIN + width + OUTLINE] = GREY
    panels[:, MARGIN:MARGIN + height, MARGIN:MARGIN + width] = colours.repeat(CELL, axis=1).repeat(CELL, axis=2)
    return panels
