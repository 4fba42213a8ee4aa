"""A small numpy plotting canvas drawn with braille characters (2 x 4 dots per terminal cell).

Why not plotext (textual-plotext): one 120 x 40 build took 44 ms and a 60 x 12 one 16 ms here (measured
on this project's machine), and the view redraws three plots up to 10 times a second during a max-speed
replay. This canvas rasterises with numpy and renders a 60 x 12 plot in well under a millisecond.

Model: a plot is a list of layers drawn in order (a later layer takes the cells it touches): lines, points,
horizontal bands (a background shade between two y values) and horizontal rules. Axes get "nice" ticks
(1, 2, 5 x 10^k); the x axis may run right-to-left (ppm, as MR spectra are drawn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.style import Style
from rich.text import Text

# braille dot bits for (row 0..3, column 0..1) inside one cell (Unicode braille pattern layout)
_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int32)


@dataclass
class Layer:
    kind: str  # "line" | "points" | "band" | "rule"
    style: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    y0: float = 0.0
    y1: float = 0.0


@dataclass
class Plot:
    """What to draw. Ranges None = fitted to the data (with 5 % headroom)."""

    layers: list[Layer] = field(default_factory=list)
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    x_reversed: bool = False
    x_label: str = ""
    x_integer: bool = False  # x counts things (averages): whole-number ticks only
    empty_text: str = "no data yet"

    def line(self, x, y, style: str) -> Plot:
        self.layers.append(Layer("line", style, _arr(x), _arr(y)))
        return self

    def points(self, x, y, style: str) -> Plot:
        self.layers.append(Layer("points", style, _arr(x), _arr(y)))
        return self

    def band(self, y0: float, y1: float, style: str) -> Plot:
        self.layers.append(Layer("band", style, y0=y0, y1=y1))
        return self

    def rule(self, y: float, style: str) -> Plot:
        self.layers.append(Layer("rule", style, y0=y))
        return self

    def has_data(self) -> bool:
        return any(layer.x is not None and np.isfinite(layer.y).any() for layer in self.layers
                   if layer.kind in ("line", "points"))


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=float)


def nice_ticks(lo: float, hi: float, max_ticks: int, min_step: float = 0.0) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps, at least ``min_step`` apart) inside lo..hi: at most max_ticks,
    and at least two whenever a round step allows it (a scale needs two labels to be read)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or max_ticks < 2:
        return []
    best: list[float] = []
    for n in range(max_ticks, max_ticks + 8):
        best = _ticks(lo, hi, n, min_step)
        if len(best) >= 2:
            return best
    return best


def _ticks(lo: float, hi: float, n: int, min_step: float) -> list[float]:
    raw = max((hi - lo) / (n - 1), min_step)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [round(first + i * step, 10) for i in range(max(0, count))]


def _fmt_tick(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step > 0 else 0
    return f"{v:.{min(decimals, 3)}f}"


def _data_range(plot: Plot, axis: str) -> tuple[float, float]:
    fixed = plot.x_range if axis == "x" else plot.y_range
    if fixed is not None:
        return fixed
    vals = [getattr(layer, axis) for layer in plot.layers if layer.kind in ("line", "points")]
    if axis == "y":
        vals += [np.array([layer.y0, layer.y1]) for layer in plot.layers if layer.kind == "band"]
        vals += [np.array([layer.y0]) for layer in plot.layers if layer.kind == "rule"]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([])
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo) if axis == "y" else 0.0
    return lo - pad, hi + pad


def render(plot: Plot, width: int, height: int) -> Text:
    """The plot as ``height`` lines of ``width`` cells (y tick labels left, x tick labels on the last line)."""
    if width < 12 or height < 3:
        return Text("")
    if not plot.has_data():
        pad = "\n" * max(0, height // 2 - 1)
        return Text(pad + plot.empty_text.center(width), style="dim")
    x_lo, x_hi = _data_range(plot, "x")
    y_lo, y_hi = _data_range(plot, "y")
    rows = height - 1
    y_ticks = nice_ticks(y_lo, y_hi, max(2, rows // 2 + 1))
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    labels = [_fmt_tick(v, y_step) for v in y_ticks]
    margin = max((len(s) for s in labels), default=1) + 1
    cols = width - margin
    if cols < 4:
        return Text("")
    dots_w, dots_h = cols * 2, rows * 4

    def to_px(x: np.ndarray) -> np.ndarray:
        f = (x - x_lo) / (x_hi - x_lo) if x_hi > x_lo else np.zeros_like(x)
        if plot.x_reversed:
            f = 1.0 - f
        return f * (dots_w - 1)

    def to_py(y: np.ndarray) -> np.ndarray:
        f = (y - y_lo) / (y_hi - y_lo) if y_hi > y_lo else np.zeros_like(y)
        return (1.0 - f) * (dots_h - 1)

    codes = np.zeros((rows, cols), dtype=np.int32)
    fg = np.full((rows, cols), -1, dtype=np.int32)  # index into styles of the cell's top layer
    bg = np.full((rows, cols), -1, dtype=np.int32)
    styles: list[str] = []
    for layer in plot.layers:
        styles.append(layer.style)
        k = len(styles) - 1
        if layer.kind == "band":
            r0, r1 = sorted((to_py(np.array([layer.y1]))[0] / 4, to_py(np.array([layer.y0]))[0] / 4))
            r0, r1 = max(0, int(math.floor(r0))), min(rows - 1, int(math.ceil(r1)) - 1)
            if r1 >= r0:
                bg[r0:r1 + 1, :] = k
            continue
        if layer.kind == "rule":
            py = to_py(np.array([layer.y0]))[0]
            if 0 <= py <= dots_h - 1:
                xs = np.arange(0, dots_w, 2, dtype=float)  # a dotted rule
                _stamp(codes, fg, k, xs, np.full_like(xs, py))
            continue
        x, y = layer.x, layer.y
        if layer.kind == "line":
            x, y = _segments(to_px(x), to_py(y))
        else:
            x, y = to_px(x), to_py(y)
        _stamp(codes, fg, k, x, y)
    return _to_text(codes, fg, bg, styles, labels, y_ticks, to_py, margin, rows, cols, plot, x_lo, x_hi, to_px)


def _segments(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dot positions along consecutive point pairs (vectorised); a NaN point breaks the line."""
    ok = np.isfinite(px) & np.isfinite(py)
    if px.size < 2:
        return px[ok], py[ok]
    x0, y0, x1, y1 = px[:-1], py[:-1], px[1:], py[1:]
    seg = ok[:-1] & ok[1:]
    x0, y0, x1, y1 = x0[seg], y0[seg], x1[seg], y1[seg]
    if x0.size == 0:
        return px[ok], py[ok]
    steps = np.ceil(np.maximum(np.abs(x1 - x0), np.abs(y1 - y0))).astype(np.int64) + 1
    steps = np.minimum(steps, 4096)
    idx = np.repeat(np.arange(x0.size), steps)
    start = np.repeat(np.cumsum(steps) - steps, steps)
    t = (np.arange(idx.size) - start) / np.maximum(steps[idx] - 1, 1)
    return x0[idx] + t * (x1 - x0)[idx], y0[idx] + t * (y1 - y0)[idx]


def _stamp(codes: np.ndarray, fg: np.ndarray, k: int, x: np.ndarray, y: np.ndarray) -> None:
    rows, cols = codes.shape
    ok = np.isfinite(x) & np.isfinite(y)
    xi = np.rint(x[ok]).astype(np.int64)
    yi = np.rint(y[ok]).astype(np.int64)
    inside = (xi >= 0) & (xi < cols * 2) & (yi >= 0) & (yi < rows * 4)
    xi, yi = xi[inside], yi[inside]
    r, c = yi // 4, xi // 2
    own = np.zeros_like(codes)
    np.bitwise_or.at(own, (r, c), _BITS[yi % 4, xi % 2])
    # a cell has one colour: the later layer takes the cells it touches (its dots only), so a clean average
    # drawn over a noisy transient stays a clean line
    mine = own != 0
    codes[mine] = own[mine]
    fg[mine] = k


def _to_text(codes, fg, bg, styles, labels, y_ticks, to_py, margin, rows, cols, plot, x_lo, x_hi, to_px) -> Text:
    label_rows = {int(np.clip(round(to_py(np.array([v]))[0] / 4 - 0.375), 0, rows - 1)): s
                  for v, s in zip(y_ticks, labels)}
    parsed = [Style.parse(s) for s in styles]
    out = Text(no_wrap=True, overflow="crop")
    for r in range(rows):
        out.append(label_rows.get(r, "").rjust(margin - 1) + "┤" if r in label_rows else " " * (margin - 1) + "│",
                   style="dim")
        line = "".join(chr(0x2800 + int(v)) if v else " " for v in codes[r])
        # run-length styles: (fg layer, bg layer) pairs
        key = fg[r] * 1000 + bg[r]
        start = 0
        for c in range(1, cols + 1):
            if c == cols or key[c] != key[start]:
                f, b = int(fg[r, start]), int(bg[r, start])
                style = Style()
                if f >= 0:
                    style += parsed[f]
                if b >= 0:
                    style += Style(bgcolor=parsed[b].bgcolor or parsed[b].color)
                out.append(line[start:c], style=style or None)
                start = c
        out.append("\n")
    out.append(_x_axis(plot, x_lo, x_hi, to_px, margin, cols), style="dim")
    return out


def _x_axis(plot: Plot, x_lo: float, x_hi: float, to_px, margin: int, cols: int) -> str:
    """Last line: x tick labels under their columns, then the axis label when it fits."""
    ticks = nice_ticks(x_lo, x_hi, max(2, cols // 10), min_step=1.0 if plot.x_integer else 0.0)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    line = [" "] * (margin + cols)
    label = f" {plot.x_label}" if plot.x_label else ""
    limit = margin + cols - len(label)
    for v in ticks:
        s = _fmt_tick(v, step)
        c = margin + int(round(to_px(np.array([v]))[0] / 2)) - len(s) // 2
        if c < margin - 1 or c + len(s) > limit or any(ch != " " for ch in line[max(0, c - 1):c + len(s) + 1]):
            continue
        line[c:c + len(s)] = s
    text = "".join(line).rstrip()
    return text + " " * max(1, limit - len(text)) + label.strip() if label else text
