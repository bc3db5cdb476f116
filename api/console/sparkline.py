"""A sparkline as inline SVG, drawn by the server: no script and no layout in the browser.

Pure: values in, SVG text out. A None (or a value that is not a finite number) is a gap in the line, so a
minute without data shows as missing, not as zero. The y axis starts at 0 (or the lowest value, if below):
counts and latencies drawn from 0 do not make a flat line of small changes look like a cliff.
"""

import math
from html import escape

PAD = 1.0  # room for half the stroke at the edges


def sparkline_svg(values: list[float | None], *, width: int = 120, height: int = 24, title: str) -> str:
    if width <= 0 or height <= 0:
        raise ValueError(f"a sparkline needs a positive size, not {width}x{height}")
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>')
    ys = [float(v) if v is not None and math.isfinite(v) else None for v in values]
    drawn = [y for y in ys if y is not None]
    if not drawn:
        return (f'{head}<text class="spark-empty" x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle" '
                f'dominant-baseline="middle" font-size="{min(10, height):g}">no data yet</text></svg>')
    low, high = min(0.0, *drawn), max(drawn)
    return head + "".join(_run_svg(run) for run in _runs(_coordinates(ys, low, high, width, height))) + "</svg>"


def _coordinates(ys, low, high, width, height) -> list[tuple[float, float] | None]:
    """Each value's point in the box (None stays None): spread evenly over the width, the latest at the right."""
    step_x = (width - 2 * PAD) / (len(ys) - 1) if len(ys) > 1 else 0.0
    span = high - low

    def y_of(value):
        share = (value - low) / span if span > 0 else 0.0
        return height - PAD - share * (height - 2 * PAD)

    first_x = PAD if len(ys) > 1 else width - PAD
    return [None if y is None else (first_x + i * step_x, y_of(y)) for i, y in enumerate(ys)]


def _runs(points) -> list[list[tuple[float, float]]]:
    """The points between gaps."""
    runs, current = [], []
    for point in points:
        if point is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(point)
    return runs + [current] if current else runs


def _run_svg(run) -> str:
    # A run of one point has no length to stroke: it is a dot.
    if len(run) == 1:
        (x, y), = run
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{PAD:g}" fill="currentColor"/>'
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
    return f'<polyline fill="none" stroke="currentColor" stroke-width="1" points="{coordinates}"/>'
