"""The charts of the statistics pages (`dropj stats`, `dropj serve`): SVG drawn by matplotlib, inline in the page.

    bars({'Left': 3, 'Right': 2}, 'answers', order=['Left', 'Right', 'Equally'], unit='responses')
    distribution(returns, 'return per episode', unit='episodes')   # a bar per value when few, else a histogram

What a chart says is what the data holds. A category or a value is labelled as itself (a return of 149 is
"149", a flag never set is one bar "0"), in its natural order (numbers ascending; categories in the `order`
given, such as a method's answers as it offers them), each label whole (rotated when long, the figure grown to
hold it), the count on each bar and integer ticks on the count axis. Past `FEW` distinct values a distribution
is a histogram on a value axis with matplotlib's ticks (whole numbers in bins centred on them), its bins said.
Values that are not finite are counted and said ("3 not finite"), never drawn; no data is a figure saying so.

The same data gives the same bytes (no date, a fixed `svg.hashsalt`, Agg's font metrics), so a page can be
compared byte for byte. Text stays text (`svg.fonttype: none`): a chart's labels can be read back and tested,
and a chart is a few kB. Styles become SVG presentation attributes rather than `style=` (the served page's
Content-Security-Policy refuses inline styles), and each chart's ids carry a prefix of its own, so many charts
share a page. Labels are text, never mathtext (`text.parse_math` off: an answer may hold a '$'). matplotlib
is imported when the first chart is drawn, and only its `Figure` (no pyplot: no GUI backend, no global state).
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
from typing import Any, Mapping, Optional, Sequence

import numpy as np

FEW = 12  # distinct short values (`_short`) drawn as a bar each, labelled with the value; else a histogram
MAX_BARS = 40  # categories drawn at most; the others are counted in the note
MAX_BINS = 30  # a histogram's bins at most
COLOUR = "#4a7fb5"
_RC = {"svg.fonttype": "none", "svg.hashsalt": "dropj", "text.parse_math": False, "font.sans-serif": ["DejaVu Sans"],
       "font.size": 9,
       "axes.unicode_minus": False, "axes.formatter.useoffset": False, "axes.spines.top": False,
       "axes.spines.right": False}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def number(value: Any) -> str:
    """A value as a label: 149.0 is '149', -0.0 is '0', 0.25 is '0.25' (10 significant digits at most)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value) + 0.0:.10g}"


def bars(counts: Mapping[Any, int], title: str, *, order: Sequence[Any] = (), unit: str = "count",
         xlabel: str = "") -> str:
    """A bar per category of `counts` ({category: count}), in `order` and then the others (numbers ascending,
    the rest by name), each labelled whole with its count on it."""
    keys = [k for k in order if k in counts] + sorted((k for k in counts if k not in set(order)), key=_natural)
    notes = [f"n = {sum(counts.values()):,}"]
    if len(keys) > MAX_BARS:
        rest = keys[MAX_BARS:]
        notes.append(f"{len(rest):,} more, {sum(counts[k] for k in rest):,} in all, not drawn")
        keys = keys[:MAX_BARS]
    if not keys:
        return _empty(title, "no values")
    labels = [number(k) if _is_number(k) else str(k) for k in keys]
    return _bar_chart(title, labels, [int(counts[k]) for k in keys], "; ".join(notes), unit, xlabel)


def distribution(values: Sequence[float], title: str, *, weights: Optional[Sequence[int]] = None,
                 unit: str = "count", xlabel: str = "") -> str:
    """The distribution of `values` (each counted `weights[i]` times, else once): a bar per distinct value
    labelled with it when there are at most `FEW` and each is short (whole, or 4 significant digits: 0.25, not
    a measured 2.4904096 seconds) or there is one, else a histogram."""
    v = np.asarray(values, np.float64).reshape(-1)
    w = np.ones(len(v), np.int64) if weights is None else np.asarray(weights, np.int64).reshape(-1)
    finite = np.isfinite(v)
    bad = int(w[~finite].sum())
    v, w = v[finite] + 0.0, w[finite]  # + 0.0: -0.0 is 0
    if not len(v):
        return _empty(title, f"no finite values: {bad:,} not finite" if bad else "no values")
    notes = [f"n = {int(w.sum()):,}"] + ([f"{bad:,} not finite, not drawn"] if bad else [])
    distinct, inverse = np.unique(v, return_inverse=True)
    if len(distinct) == 1 or len(distinct) <= FEW and all(_short(x) for x in distinct):
        labels = [number(x) for x in distinct]
        if len(set(labels)) < len(labels):  # values alike to 10 digits: each in full
            labels = [repr(float(x)) for x in distinct]
        counts = np.bincount(inverse.reshape(-1), weights=w, minlength=len(distinct)).astype(np.int64)
        return _bar_chart(title, labels, counts.tolist(), "; ".join(notes), unit, xlabel)
    whole = bool(np.all(v == np.round(v)))
    lo, hi = float(distinct[0]), float(distinct[-1])
    if whole:  # bins of `width` whole numbers, each centred on its numbers
        width = max(1, math.ceil((hi - lo + 1) / MAX_BINS))
        edges = lo - 0.5 + width * np.arange(math.ceil((hi - lo + 1) / width) + 1)
        notes.append(f"{len(edges) - 1} bins of {width}" if width > 1 else "a bin per whole number")
    else:
        width = _nice((hi - lo) / min(MAX_BINS, max(10, len(distinct) // 5)))
        start = math.floor(lo / width)
        edges = width * np.arange(start, max(math.ceil(hi / width), start + 1) + 1)  # the last bin holds hi
        notes.append(f"{len(edges) - 1} bins of {number(width)}")
    counts, _ = np.histogram(v, bins=edges, weights=w)
    return _histogram(title, edges, counts.astype(np.int64), "; ".join(notes), unit, xlabel, whole)


# --- drawing --------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _nice(step: float) -> float:
    """The least of 1, 2, 2.5 and 5 times a power of ten that is at least `step` (> 0)."""
    power = 10.0 ** math.floor(math.log10(step))
    return next(float(f"{m * power:.12g}") for m in (1, 2, 2.5, 5, 10) if m * power >= step)


def _short(value: float) -> bool:
    return value == round(value) or float(f"{value:.4g}") == value


def _natural(value: Any) -> tuple:
    return (0, float(value), "") if _is_number(value) else (1, 0.0, str(value))


def _figure(width: float, height: float = 2.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _titled(axes: Any, title: str, note: str) -> None:
    """The title above the axes, and under it the note (n, values not finite, bins)."""
    axes.set_title(title, loc="left", fontsize=10, fontweight="bold", pad=16, x=-0.12)
    axes.text(-0.12, 1.03, note, transform=axes.transAxes, fontsize=8, color="#444444")


def _bar_chart(title: str, labels: list[str], counts: list[int], note: str, unit: str, xlabel: str) -> str:
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(_RC):
        longest = max(len(label) for label in labels)
        rotate = longest > 4 and longest * len(labels) > 40
        figure, axes = _figure(min(12.0, max(3.4, 0.45 * len(labels) + 1.4)))
        positions = np.arange(len(labels))
        drawn = axes.bar(positions, counts, color=COLOUR, width=0.7)
        axes.bar_label(drawn, labels=[f"{c:,}" for c in counts], fontsize=8, padding=1)
        axes.set_xticks(positions, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                        rotation_mode="anchor")
        axes.set_xlim(-0.6, len(labels) - 0.4)
        axes.set_ylim(0, max(max(counts), 1) * 1.18)
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes.set_ylabel(unit)
        if xlabel:
            axes.set_xlabel(xlabel)
        _titled(axes, title, note)
        return _svg(figure, title)


def _histogram(title: str, edges: np.ndarray, counts: np.ndarray, note: str, unit: str, xlabel: str,
               whole: bool) -> str:
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context(_RC):
        figure, axes = _figure(4.6)
        axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=COLOUR, edgecolor="white",
                 linewidth=0.5)
        axes.set_xlim(edges[0], edges[-1])
        axes.set_ylim(0, max(int(counts.max()), 1) * 1.1)
        axes.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=whole))
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes.set_ylabel(unit)
        axes.set_xlabel(xlabel or "value")
        _titled(axes, title, note)
        return _svg(figure, title)


def _empty(title: str, says: str) -> str:
    import matplotlib

    with matplotlib.rc_context(_RC):
        figure, axes = _figure(3.2, 1.4)
        axes.set_axis_off()
        axes.text(0.5, 0.45, says, ha="center", va="center", fontsize=10, color="#444444")
        axes.set_title(title, loc="left", fontsize=10, fontweight="bold", x=-0.12)
        return _svg(figure, title)


_STYLE = re.compile(r' style="([^"]*)"')
_SHEET = re.compile(r'\s*<defs>\s*<style type="text/css">\*\{([^}]*)\}</style>\s*</defs>')
_IDS = re.compile(r'(id="|url\(#|href="#)([A-Za-z_][\w.-]*)')


def _attributes(declarations: str) -> str:
    """'fill: #fff; stroke-width: 0.8' as presentation attributes: ' fill="#fff" stroke-width="0.8"'."""
    pairs = (d.split(":", 1) for d in declarations.split(";") if ":" in d)
    return "".join(f' {name.strip()}="{value.strip()}"' for name, value in pairs)


def _svg(figure: Any, title: str) -> str:
    """The figure as an inline <svg> element: no prolog, styles as attributes, ids of its own."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.08, metadata=_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    root = f' role="img" aria-label="{html.escape(title)}" class="chart"'
    sheet = _SHEET.search(text)  # `*{stroke-linejoin: round; ...}`: on the root, which its children inherit
    if sheet:
        root += _attributes(sheet[1])
        text = text[:sheet.start()] + text[sheet.end():]
    text = _STYLE.sub(lambda m: _attributes(m[1]), text)  # already escaped as an attribute's value
    prefix = "c" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    text = _IDS.sub(lambda m: m[1] + prefix + m[2], text)
    return text.replace("<svg ", "<svg" + root + " ", 1).strip()


__all__ = ["FEW", "bars", "distribution", "number"]
