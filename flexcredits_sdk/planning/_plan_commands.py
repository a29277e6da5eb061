"""The ``flexcredits simulate`` and ``flexcredits forecast`` commands."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import click

from .._exceptions import FlexCreditsError, HistoryError
from ._daily import daily_from_history, read_daily
from ._forecast import Forecast, forecast
from ._history import read_history
from ._plans import CreditPlan
from ._presets import PRESETS, resolve_model
from ._report import render
from ._simulate import Simulator
from ._svg import chart_svg

__all__ = ["forecast_command", "register", "simulate_command"]

_DEFAULT_MODELS = ("agentforce", "per-conversation", "per-resolution")
_FORMATS = click.Choice(["jsonl", "csv", "records"])


def _fail(exc: FlexCreditsError, hint: str = "") -> click.ClickException:
    return click.ClickException(str(exc) + hint)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@click.command("simulate")
@click.argument("history", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help=f"A preset ({', '.join(sorted(PRESETS))}) or a .json/.toml model file; repeat for "
    f"several. Default: {', '.join(_DEFAULT_MODELS)}.",
)
@click.option("--format", "format_", type=_FORMATS, help="The history's format (by suffix).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "csv", "html"]),
    default="text",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), help="Save an SVG.")
@click.option("--skip-bad-rows", is_flag=True, help="Skip rows that cannot be read.")
@click.option(
    "--idle-hours",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="Event-time hours after which a quiet conversation closes.",
)
@click.option(
    "--max-open",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="The most conversations held open at once.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: when stderr is a terminal).",
)
def simulate_command(
    history: Path,
    models: tuple[str, ...],
    format_: str | None,
    output: str,
    out: Path | None,
    chart: Path | None,
    skip_bad_rows: bool,
    idle_hours: int,
    max_open: int,
    progress: bool | None,
) -> None:
    """Price the actions in HISTORY (JSONL or CSV) under each pricing model."""
    try:
        simulator = Simulator(
            list(models or _DEFAULT_MODELS),
            idle=_dt.timedelta(hours=idle_hours),
            max_open=max_open,
        )
        fmt = format_ or ("csv" if history.suffix.lower() == ".csv" else "jsonl")
        show = sys.stderr.isatty() if progress is None else progress
        with history.open(encoding="utf-8", newline="" if fmt == "csv" else None) as stream:
            rows = read_history(
                stream,
                format=fmt,  # type: ignore[arg-type]
                on_bad_row=simulator.bad_row if skip_bad_rows else None,
            )
            if show:
                _feed_with_bar(simulator, rows, stream, history.stat().st_size)
            else:
                simulator.feed(rows)
        result = simulator.result()
    except HistoryError as exc:
        raise _fail(exc, "; pass --skip-bad-rows to skip such rows") from None
    except FlexCreditsError as exc:
        raise _fail(exc) from None
    if chart is not None:
        chart.write_text(chart_svg(result), encoding="utf-8")
    _write(render(result, output), out)  # type: ignore[arg-type]


def _feed_with_bar(simulator: Simulator, rows: Iterator[Any], stream: IO[str], size: int) -> None:
    buffer = getattr(stream, "buffer", None)
    with click.progressbar(length=size, label="Reading", file=sys.stderr) as bar:
        done = 0
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == 65_536:
                simulator.feed(batch)
                batch = []
                if buffer is not None:
                    where = min(buffer.tell(), size)
                    bar.update(where - done)
                    done = where
        simulator.feed(batch)
        bar.update(size - done)


def _load_daily(source: Path, model: str | None, format_: str | None) -> tuple[dict[Any, Any], int]:
    plan = resolve_model(model or "agentforce")
    if not isinstance(plan, CreditPlan):
        raise click.BadParameter(f"{plan.name!r} is not a credit plan", param_hint="--model")
    with source.open(encoding="utf-8") as stream:
        head = stream.readline()
    is_daily = source.suffix.lower() == ".csv" and {"date", "credits"} <= {
        name.strip() for name in next(csv.reader(io.StringIO(head)), [])
    }
    if is_daily and format_ is None:
        return read_daily(source), plan.rate_card.pack_credits
    daily = daily_from_history(source, plan, format=format_)  # type: ignore[arg-type]
    return daily, plan.rate_card.pack_credits


def _forecast_text(result: Forecast) -> str:
    lines = [f"Forecast from {result.start}: {result.method}"]
    for days, (p50, p90) in ((30, result.next_30), (90, result.next_90)):
        lines.append(f"Next {days} days: {p50:,} credits at P50, {p90:,} at P90")
    pattern = ", ".join(f"{day} {credits:,}" for day, credits in result.weekly.items())
    lines.append(f"Weekly pattern (mean credits): {pattern}")
    if result.balance is not None:

        def when(day: _dt.date | None) -> str:
            return str(day) if day else "not within the forecast"

        lines.append(
            f"Balance {result.balance:,} runs out: {when(result.runs_out_p50)} at P50, "
            f"{when(result.runs_out_p90)} at P90"
        )
    if result.until is not None:
        lines.append(
            f"To last until {result.until}: buy {result.packs_p50} packs at P50, "
            f"{result.packs_p90} at P90 ({result.pack_credits:,} credits each)"
        )
    lines += ["", "date        p50      p90  cumulative p50  cumulative p90"]
    for d in result.days[:14]:
        lines.append(
            f"{d.date}  {d.p50:>7,}  {d.p90:>7,}  {d.cumulative_p50:>14,}  {d.cumulative_p90:>14,}"
        )
    if len(result.days) > 14:
        lines.append(f"... {len(result.days) - 14} more days (use --output json or csv)")
    return "\n".join(lines) + "\n"


def _forecast_csv(result: Forecast) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("date", "p50", "p90", "cumulative_p50", "cumulative_p90"))
    for d in result.days:
        writer.writerow((d.date, d.p50, d.p90, d.cumulative_p50, d.cumulative_p90))
    return buffer.getvalue()


@click.command("forecast")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--model", help="The credit plan that prices a history (agentforce).")
@click.option("--format", "format_", type=_FORMATS, help="Read SOURCE as this history format.")
@click.option("--balance", type=int, help="Credits left now: gives the run-out dates.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last until this date.")
@click.option("--horizon", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--pack-credits", type=click.IntRange(min=1), help="Credits per pack.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
def forecast_command(
    source: Path,
    model: str | None,
    format_: str | None,
    balance: int | None,
    until: _dt.datetime | None,
    horizon: int,
    pack_credits: int | None,
    seed: int,
    output: str,
) -> None:
    """Forecast credit use from SOURCE: a date,credits CSV, or a history to price."""
    try:
        daily, default_pack = _load_daily(source, model, format_)
        result = forecast(
            daily,
            horizon=horizon,
            balance=balance,
            until=until.date() if until else None,
            pack_credits=pack_credits or default_pack,
            seed=seed,
        )
    except FlexCreditsError as exc:
        raise _fail(exc) from None
    if output == "json":
        click.echo(json.dumps(result.model_dump(mode="json"), indent=2, default=_jsonable))
    elif output == "csv":
        click.echo(_forecast_csv(result), nl=False)
    else:
        click.echo(_forecast_text(result), nl=False)


def _jsonable(value: Any) -> str:
    if isinstance(value, Decimal | _dt.date):
        return str(value)
    raise TypeError(type(value).__name__)  # pragma: no cover


def register(group: click.Group) -> None:
    """Add the planning commands to the ``flexcredits`` command group."""
    group.add_command(simulate_command)
    group.add_command(forecast_command)
