"""The usage chart as server-rendered SVG (no chart library, no script): one bar per day
for tokens, a line for euros on a second scale."""

from dataclasses import dataclass, field

WIDTH, HEIGHT = 800, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 12, 28


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    line: str = ""  # the euros polyline's points
    dots: list[tuple[float, float, str]] = field(default_factory=list)
    left_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, tokens)
    right_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, euros)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    baseline: float = HEIGHT - BOTTOM
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT


def _nice(top: float) -> float:
    """A round upper bound at or above `top` (1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(top))) / 10 if top >= 1 else 1.0
    while magnitude > top:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def daily(series: list[dict[str, object]]) -> Chart:
    """series: one {"day", "tokens", "cost_eur"} per day, in order."""
    if not series:
        return Chart()
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_tokens = _nice(max(float(p["tokens"]) for p in series))  # type: ignore[arg-type]
    top_eur = _nice(max(float(p["cost_eur"]) for p in series))  # type: ignore[arg-type]
    slot = plot_w / len(series)
    bars, points, dots = [], [], []
    for i, point in enumerate(series):
        tokens, cost = float(point["tokens"]), float(point["cost_eur"])  # type: ignore[arg-type]
        height = plot_h * tokens / top_tokens
        x = LEFT + i * slot
        title = f"{point['day']}: {int(tokens):,} tokens, €{cost:.4f}"
        bars.append(Bar(round(x + slot * 0.15, 2), round(TOP + plot_h - height, 2), round(slot * 0.7, 2),
                        round(height, 2), title))
        cx, cy = round(x + slot / 2, 2), round(TOP + plot_h * (1 - cost / top_eur), 2)
        points.append(f"{cx},{cy}")
        dots.append((cx, cy, title))
    ticks = [0.0, 0.5, 1.0]
    left = [(round(TOP + plot_h * (1 - t), 2), _short(top_tokens * t)) for t in ticks]
    right = [(round(TOP + plot_h * (1 - t), 2), f"€{top_eur * t:g}") for t in ticks]
    picks = sorted({0, len(series) // 2, len(series) - 1})
    labels = [(round(LEFT + i * slot + slot / 2, 2), str(series[i]["day"])) for i in picks]
    return Chart(bars=bars, line=" ".join(points), dots=dots, left_ticks=left, right_ticks=right, x_labels=labels)
