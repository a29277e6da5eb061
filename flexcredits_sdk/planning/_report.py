"""Simulation results as text, JSON, CSV or a standalone HTML page with a chart."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from html import escape
from typing import Literal

from .._exceptions import ConfigurationError
from .._format import credits_text, money_text
from ._results import SimulationResult
from ._svg import chart_svg

__all__ = ["OutputFormat", "render"]

OutputFormat = Literal["text", "json", "csv", "html"]


def _usd(value: Decimal) -> str:
    return money_text(value)


def _summary(result: SimulationResult) -> str:
    days = f", {result.first_day} to {result.last_day}" if result.first_day else ""
    return (
        f"{result.rows:,} rows, {result.conversations:,} conversations, {result.actions:,} "
        f"actions ({result.mean_actions:.2f} per conversation), {result.resolved:,} "
        f"resolved{days}"
    )


def _text(result: SimulationResult) -> str:
    lines = [_summary(result), ""]
    head = ("model", "kind", "bill", "credits", "mean", "p50", "p90", "max")
    table = [head]
    for m in result.models:
        s = m.per_conversation
        mark = "" if s.exact else "~"
        table.append(
            (
                m.name,
                m.kind,
                _usd(m.total),
                "" if m.credits is None else credits_text(m.credits),
                _usd(s.mean),
                mark + _usd(s.p50),
                mark + _usd(s.p90),
                _usd(s.max),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    if result.cheapest is not None:
        best = result.model(result.cheapest)
        lines.append(f"Cheapest at this volume: {best.name} ({_usd(best.total)})")
    for b in result.break_even:
        lines.append(f"Break-even: {b.statement}")
    by_tag = [{(t.key, t.value): t.cost for t in m.by_tag} for m in result.models]
    tags = sorted({pair for costs in by_tag for pair in costs})
    if tags:
        lines += ["", "Cost by tag (list price, a conversation counts under its first tags):"]
        for pair in tags:
            costs = ", ".join(
                f"{m.name} {_usd(c.get(pair, Decimal(0)))}"
                for m, c in zip(result.models, by_tag, strict=True)
            )
            lines.append(f"  {pair[0]}={pair[1]}: {costs}")
    if result.bad_rows:
        lines += ["", f"Skipped {result.bad_rows:,} bad rows:"]
        lines += [f"  {e}" for e in result.bad_row_errors]
    if result.forced_closes:
        lines.append(
            f"Note: {result.forced_closes:,} conversations were closed early (max_open reached)"
        )
    return "\n".join(lines) + "\n"


def _csv(result: SimulationResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "model", "key", "value"))
    for m in result.models:
        s = m.per_conversation
        for name, value in (
            ("total", m.total),
            ("list_total", m.list_total),
            ("credits", m.credits),
            ("mean", s.mean),
            ("p50", s.p50),
            ("p90", s.p90),
            ("max", s.max),
        ):
            if value is not None:
                writer.writerow((name, m.name, "", value))
        for t in m.by_tag:
            writer.writerow(("tag", m.name, f"{t.key}={t.value}", t.cost))
        for month in m.by_month:
            writer.writerow(("month", m.name, month.month, month.cost))
    if result.cheapest is not None:
        writer.writerow(("cheapest", result.cheapest, "", result.model(result.cheapest).total))
    for b in result.break_even:
        writer.writerow(("break_even", b.cheaper, b.other, b.actions_per_conversation))
    return out.getvalue()


def _html(result: SimulationResult) -> str:
    rows = "".join(
        f"<tr><td>{escape(m.name)}</td><td>{m.kind}</td><td>{_usd(m.total)}</td>"
        f"<td>{_usd(m.per_conversation.mean)}</td><td>{_usd(m.per_conversation.p50)}</td>"
        f"<td>{_usd(m.per_conversation.p90)}</td><td>{_usd(m.per_conversation.max)}</td>"
        f"<td>{escape(m.source)}</td></tr>"
        for m in result.models
    )
    notes = "".join(f"<li>{escape(b.statement)}</li>" for b in result.break_even)
    cheapest = (
        f"<p>Cheapest at this volume: <b>{escape(result.cheapest)}</b></p>"
        if result.cheapest
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>flexcredits simulation</title><style>body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}td:first-child{text-align:left}</style></head><body>"
        f"<h1>What this history costs</h1><p>{escape(_summary(result))}</p>"
        f"{chart_svg(result)}"
        "<table><tr><th>model</th><th>kind</th><th>bill</th><th>mean</th><th>p50</th>"
        f"<th>p90</th><th>max</th><th>source</th></tr>{rows}</table>"
        f"{cheapest}<ul>{notes}</ul></body></html>\n"
    )


def render(result: SimulationResult, output: OutputFormat = "text") -> str:
    """Return a simulation result as ``text``, ``json``, ``csv`` or ``html``.

    JSON and CSV carry exact decimal strings; text and HTML round money to cents.

    Raises:
        ConfigurationError: The output format is unknown.
    """
    if output == "text":
        return _text(result)
    if output == "json":
        return json.dumps(result.model_dump(mode="json"), indent=2) + "\n"
    if output == "csv":
        return _csv(result)
    if output == "html":
        return _html(result)
    raise ConfigurationError("output", output, "must be 'text', 'json', 'csv' or 'html'")
