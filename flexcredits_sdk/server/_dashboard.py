"""The read-only dashboard: one HTML page with inline SVG charts, no script, no external asset."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

from .._models import Alert, Balance, HoldInfo, UsageRow
from ._budgets import BudgetEntry

__all__ = ["render_dashboard", "stacked_bars"]

_PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2", "#db2777", "#65a30d")
_OTHER = "#9ca3af"
_MAX_SERIES = len(_PALETTE)
#: The most holds the page lists (a tenant with many agents may have many leases).
_MAX_HOLDS = 20

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
background:#f8fafc;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:16px 32px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#94a3b8;font-size:13px}
main{padding:24px 32px;display:grid;gap:24px;max-width:1100px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:16px}
.card,section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px}
.card .label{font-size:12px;color:#64748b;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:26px;font-weight:600;margin-top:6px}
.card .value.negative{color:#dc2626}
h2{font-size:15px;margin:0 0 12px}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{text-align:left;padding:6px 8px;border-bottom:1px solid #e2e8f0}
th{color:#64748b;font-weight:500}td.num,th.num{text-align:right}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:12px;margin-top:8px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.empty{color:#64748b;font-size:13px}
"""


def _fmt(value: int | Decimal) -> str:
    if isinstance(value, int) or value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def stacked_bars(
    rows: Sequence[UsageRow], series_key: str, *, width: int = 1000, height: int = 220
) -> str:
    """Return an SVG stacked bar chart of credits per bucket, one colour per series value.

    Args:
        rows: Usage rows keyed by ``bucket`` and `series_key`.
        series_key: The key whose values are the stacked series (e.g. ``"environment"``).
        width: The chart's width in pixels.
        height: The chart's height in pixels.
    """
    if not rows:
        return '<p class="empty">No usage in this period.</p>'
    totals: dict[str, Decimal] = {}
    for row in rows:
        name = row.key.get(series_key) or "(none)"
        totals[name] = totals.get(name, Decimal(0)) + Decimal(row.credits)
    ranked = sorted(totals, key=lambda n: (-totals[n], n))
    shown = ranked[: _MAX_SERIES - 1] if len(ranked) > _MAX_SERIES else ranked
    colours = {name: _PALETTE[i] for i, name in enumerate(shown)}
    stacks: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        name = row.key.get(series_key) or "(none)"
        name = name if name in colours else "other"
        stack = stacks.setdefault(str(row.key.get("bucket")), {})
        stack[name] = stack.get(name, Decimal(0)) + Decimal(row.credits)
    buckets = sorted(stacks)
    peak = max(sum(s.values()) for s in stacks.values()) or Decimal(1)
    left, bottom, top = 64, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    slot = plot_w / len(buckets)
    bar = max(2.0, slot * 0.7)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="100%" '
        f'viewBox="0 0 {width} {height}" aria-label="credits by {escape(series_key)}">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'stroke="#cbd5e1"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" font-size="11" '
        f'fill="#64748b">{_fmt(peak)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" '
        'fill="#64748b">0</text>',
    ]
    label_every = max(1, len(buckets) // 12)
    for i, bucket in enumerate(buckets):
        x = left + i * slot + (slot - bar) / 2
        y = float(top + plot_h)
        for name in [*shown, "other"]:
            credits = stacks[bucket].get(name)
            if not credits:
                continue
            h = float(credits / peak) * plot_h
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colours.get(name, _OTHER)}"><title>{escape(bucket)} '
                f"{escape(name)}: {_fmt(credits)} credits</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                f'font-size="11" fill="#64748b">{escape(bucket)}</text>'
            )
    parts.append("</svg>")
    named = [(n, totals[n]) for n in shown]
    if len(ranked) > len(shown):
        named.append(("other", sum((totals[n] for n in ranked[len(shown) :]), Decimal(0))))
    legend = "".join(
        f'<span><span class="swatch" style="background:{colours.get(n, _OTHER)}"></span>'
        f"{escape(n)} ({_fmt(total)})</span>"
        for n, total in named
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _alerts_table(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return '<p class="empty">No alerts.</p>'
    rows = "".join(
        f"<tr><td>{a.at:%Y-%m-%d %H:%M} UTC</td><td>{escape(a.kind)}</td>"
        f"<td>{escape(a.message)}</td></tr>"
        for a in alerts
    )
    return f"<table><tr><th>When</th><th>Kind</th><th>Alert</th></tr>{rows}</table>"


def _refused(refusals: Mapping[str, tuple[int, int | Decimal]], scope: str) -> str:
    count, credits = refusals.get(scope, (0, 0))
    return f"{count} ({_fmt(credits)} credits)" if count else "0"


def _budgets_table(
    budgets: Sequence[BudgetEntry], refusals: Mapping[str, tuple[int, int | Decimal]]
) -> str:
    if not budgets:
        return '<p class="empty">No budgets.</p>'
    rows = "".join(
        f"<tr><td>{escape(b.name)}</td><td>{escape(b.period or 'ever')}</td>"
        f"<td>{'hard' if b.hard else 'soft'}</td>"
        f'<td class="num">{_fmt(b.spent)}</td><td class="num">{_fmt(b.held)}</td>'
        f'<td class="num">{_fmt(b.limit)}</td>'
        f'<td class="num">{_refused(refusals, b.id) if b.hard else "-"}</td></tr>'
        for b in budgets
    )
    return (
        '<table><tr><th>Budget</th><th>Period</th><th>Kind</th><th class="num">Spent</th>'
        '<th class="num">Held</th><th class="num">Limit</th><th class="num">Holds refused</th>'
        f"</tr>{rows}</table>"
    )


def _holds_table(
    holds: Sequence[HoldInfo], refusals: Mapping[str, tuple[int, int | Decimal]]
) -> str:
    refused = (
        f"<p>Holds refused for want of credits (overdraft denied): "
        f"{_refused(refusals, 'balance')}.</p>"
    )
    if not holds:
        return f'<p class="empty">No active holds.</p>{refused}'
    shown = holds[:_MAX_HOLDS]
    rows = "".join(
        f"<tr><td><code>{escape(h.id)}</code></td>"
        f"<td>{escape(', '.join(f'{k}={v}' for k, v in sorted(h.tags.items())) or 'any')}</td>"
        f'<td class="num">{_fmt(h.remaining)}</td><td class="num">{_fmt(h.credits)}</td>'
        f"<td>{h.expires_at.astimezone(_dt.UTC):%H:%M:%S} UTC</td></tr>"
        for h in shown
    )
    more = f"<p>and {len(holds) - len(shown)} more.</p>" if len(holds) > len(shown) else ""
    return (
        '<table><tr><th>Hold</th><th>Tags</th><th class="num">Reserved</th>'
        f'<th class="num">Of</th><th>Expires</th></tr>{rows}</table>{more}{refused}'
    )


def render_dashboard(
    *,
    tenant: str,
    balance: Balance,
    by_environment: Sequence[UsageRow],
    by_tag: Sequence[UsageRow],
    tag_key: str | None,
    budgets: Sequence[BudgetEntry],
    alerts: Sequence[Alert],
    bucket: str,
    holds: Sequence[HoldInfo] = (),
    refusals: Mapping[str, tuple[int, int | Decimal]] | None = None,
) -> str:
    """Return the dashboard page of one tenant as HTML."""
    refusals = refusals or {}
    cards = [
        ("Balance (credits)", balance.credits),
        ("Held (credits)", balance.held),
        ("Worth (USD)", balance.usd),
        ("Used (credits)", balance.used),
        ("Granted (credits)", balance.granted),
    ]
    card_html = "".join(
        f'<div class="card"><div class="label">{escape(label)}</div>'
        f'<div class="value{" negative" if value < 0 else ""}">{_fmt(value)}</div></div>'
        for label, value in cards
    )
    tag_title = f"Credits by tag “{escape(tag_key)}” per {bucket}" if tag_key else "Credits by tag"
    tag_chart = (
        stacked_bars(by_tag, tag_key)
        if tag_key
        else '<p class="empty">No tagged usage yet; add <code>?tag=KEY</code> to choose one.</p>'
    )
    as_of = balance.as_of.astimezone(_dt.UTC)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(tenant)} · flexcredits wallet</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(tenant)} · Digital Wallet</h1>"
        f"<p>As of {as_of:%Y-%m-%d %H:%M:%S} UTC · owed {_fmt(balance.owed)} · "
        f"expired {_fmt(balance.expired)}</p></header><main>"
        f'<div class="cards">{card_html}</div>'
        f"<section><h2>Credits by environment per {bucket}</h2>"
        f"{stacked_bars(by_environment, 'environment')}</section>"
        f"<section><h2>{tag_title}</h2>{tag_chart}</section>"
        f"<section><h2>Budgets</h2>{_budgets_table(budgets, refusals)}</section>"
        f"<section><h2>Holds</h2>{_holds_table(holds, refusals)}</section>"
        f"<section><h2>Recent alerts</h2>{_alerts_table(alerts)}</section>"
        "</main></body></html>"
    )
