"""An SVG chart of a simulation, written by hand: no plotting library needed.

Left: each model's bill. Right: the cost of one conversation against its length, one line per
model, so the break-even points show where the lines cross.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape

from ._results import SimulationResult

__all__ = ["chart_svg"]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_W, _H = 880, 340
_PAD = 48


def _money(value: Decimal) -> str:
    return f"${value:,.2f}"


def _bars(result: SimulationResult, x0: int, width: int) -> list[str]:
    out = [f'<text x="{x0}" y="22" class="title">Bill per model</text>']
    models = result.models
    top = max((m.total for m in models), default=Decimal(0)) or Decimal(1)
    row = (_H - _PAD - 40) / max(len(models), 1)
    label_w = 150
    for i, m in enumerate(models):
        y = 40 + i * row
        length = float(m.total / top) * (width - label_w - 90)
        color = _COLORS[i % len(_COLORS)]
        out.append(
            f'<text x="{x0 + label_w - 6}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(m.name)}</text>"
            f'<rect x="{x0 + label_w}" y="{y + row * 0.15:.1f}" width="{length:.1f}" '
            f'height="{row * 0.7:.1f}" fill="{color}"/>'
            f'<text x="{x0 + label_w + length + 4:.1f}" y="{y + row / 2 + 4:.1f}">'
            f"{_money(m.total)}</text>"
        )
    return out


def _lines(result: SimulationResult, x0: int, width: int) -> list[str]:
    out = [f'<text x="{x0}" y="22" class="title">Cost of one conversation by its length</text>']
    crossings = [b.actions_per_conversation for b in result.break_even]
    span = max([Decimal(10), result.mean_actions * 2, *(c * Decimal("1.5") for c in crossings)])
    span = span.to_integral_value(rounding="ROUND_CEILING")
    n_max = float(span)
    costs = [m.fixed + m.per_action * span for m in result.models]
    c_max = float(max(costs, default=Decimal(1)) or 1)
    left, bottom, right, top = x0 + _PAD, _H - _PAD, x0 + width - 10, 40
    sx = (right - left) / n_max
    sy = (bottom - top) / c_max
    out.append(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{top}" class="axis"/>'
        f'<text x="{(left + right) / 2:.0f}" y="{_H - 10}" text-anchor="middle">'
        "actions per conversation</text>"
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_money(Decimal(c_max))}</text>'
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end">$0</text>'
        f'<text x="{right}" y="{bottom + 16}" text-anchor="end">{n_max:g}</text>'
    )
    mean_x = left + float(result.mean_actions) * sx
    out.append(
        f'<line x1="{mean_x:.1f}" y1="{bottom}" x2="{mean_x:.1f}" y2="{top}" class="mean"/>'
        f'<text x="{mean_x + 3:.1f}" y="{top + 12}">mean {result.mean_actions:.1f}</text>'
    )
    labels: list[float] = []
    for i, m in enumerate(result.models):
        y1 = bottom - float(m.fixed) * sy
        y2 = bottom - float(m.fixed + m.per_action * span) * sy
        color = _COLORS[i % len(_COLORS)]
        y_label = y2 - 4
        while any(abs(y_label - other) < 13 for other in labels):  # keep labels apart
            y_label -= 13
        labels.append(y_label)
        out.append(
            f'<line x1="{left}" y1="{y1:.1f}" x2="{right}" y2="{y2:.1f}" stroke="{color}" '
            f'stroke-width="2"><title>{escape(m.name)}</title></line>'
            f'<text x="{right - 4}" y="{y_label:.1f}" text-anchor="end" fill="{color}">'
            f"{escape(m.name)}</text>"
        )
    for b in result.break_even:
        x = left + float(b.actions_per_conversation) * sx
        out.append(
            f'<circle cx="{x:.1f}" cy="{bottom}" r="3" fill="#333">'
            f"<title>{escape(b.statement)}</title></circle>"
        )
    return out


def chart_svg(result: SimulationResult) -> str:
    """Return an SVG image of the simulation: bills per model, and cost by length."""
    half = _W // 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        "<style>.title{font-weight:bold;font-size:14px}.axis{stroke:#333}"
        ".mean{stroke:#999;stroke-dasharray:4 3}</style>",
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        *_bars(result, 10, half - 10),
        *_lines(result, half, half),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
