"""The ``flexcredits simulate`` and ``flexcredits forecast`` commands."""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import functools
import io
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import click

from .._environment import API_KEY_VARIABLE
from .._exceptions import ConfigurationError, FlexCreditsError, HistoryError
from .._format import credits_text
from ._daily import daily_from_history, read_daily
from ._forecast import Forecast, forecast
from ._history import HistoryFormat, detect_format, read_history
from ._plans import CreditPlan
from ._presets import PRESETS, resolve_model
from ._replay import (
    BudgetOutlook,
    TagOutlook,
    budget_outlooks,
    open_wallet,
    tag_outlooks,
    wallet_daily,
    wallet_rows,
)
from ._report import render
from ._simulate import OUT_OF_ORDER, Simulator
from ._sort import sorted_by_time
from ._svg import chart_svg

__all__ = ["forecast_command", "register", "simulate_command"]

_DEFAULT_MODELS = ("agentforce", "per-conversation", "per-resolution")
_FORMATS = click.Choice(["jsonl", "csv", "records"])
_SKIP_HINT = "; pass --skip-bad-rows to skip such rows"


def _fail(exc: FlexCreditsError, skipping: bool = True) -> click.ClickException:
    """Return the one-line error; suggest --skip-bad-rows only where it would help."""
    skippable = (
        isinstance(exc, HistoryError)
        and exc.field != "header"
        and not exc.reason.startswith(OUT_OF_ORDER)
    )
    text = str(exc).replace("give the format (", "pass --format (")
    return click.ClickException(text + ("" if skipping or not skippable else _SKIP_HINT))


def _history_format(history: Path, format_: str | None) -> HistoryFormat:
    return format_ or detect_format(history)  # type: ignore[return-value]


def _no_rows(source: Path, bad_rows: int, skipping: bool = False) -> click.ClickException:
    if bad_rows:
        return click.ClickException(
            f"{source}: none of its rows could be read ({bad_rows:,} bad rows skipped)"
        )
    skipped = ", or every row was bad and skipped" if skipping else ""
    return click.ClickException(
        f"{source}: no rows to read (the file is empty or only a header{skipped})"
    )


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def _wallet_options(command: Any, *, until: bool = True) -> Any:
    """``--wallet`` (instead of a file), its key and the window of records to read (`until`:
    with its end)."""
    options = [
        click.option(
            "--wallet",
            "wallet_source",
            metavar="PATH_OR_URL",
            help="Read what a wallet booked instead of a file: a wallet file "
            "(OfflineWallet(path=...)) or a wallet service's URL.",
        ),
        click.option(
            "--key",
            envvar=API_KEY_VARIABLE,
            help=f"The service's API key (${API_KEY_VARIABLE}).",
        ),
        click.option("--since", type=_DAY, help="With --wallet: from this UTC day or time."),
    ]
    if until:
        options.append(
            click.option("--until", "until_", type=_DAY, help="With --wallet: before this one.")
        )
    for option in reversed(options):
        command = option(command)
    return command


_DAY = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


def _one_source(path: Path | None, wallet: str | None, what: str) -> None:
    if (path is None) == (wallet is None):
        raise click.UsageError(f"give {what} or --wallet PATH_OR_URL (one of them)")


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    return None if value is None else value.replace(tzinfo=_dt.UTC)


@click.command("simulate")
@click.argument(
    "history", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help=f"A preset ({', '.join(sorted(PRESETS))}) or a .json/.toml model file; repeat for "
    f"several. Default: {', '.join(_DEFAULT_MODELS)}.",
)
@click.option(
    "--format",
    "format_",
    type=_FORMATS,
    help="The history's format (default: by its suffix, .csv or .jsonl, else its first line).",
)
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
    help="Event-time hours after which a quiet conversation closes (a longer gap starts a new "
    "one).",
)
@click.option(
    "--max-open",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="A memory cap: the most conversations held open at once (more close early, counted "
    "as forced closes), and the most closed ones remembered to check rows out of time order.",
)
@click.option(
    "--sort",
    is_flag=True,
    help="Sort the rows by time first, with bounded memory (temporary files in $TMPDIR): for "
    "files that are out of time order.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr (default: when stderr is a terminal).",
)
@_wallet_options
def simulate_command(
    history: Path | None,
    models: tuple[str, ...],
    format_: str | None,
    output: str,
    out: Path | None,
    chart: Path | None,
    skip_bad_rows: bool,
    idle_hours: int,
    max_open: int,
    sort: bool,
    progress: bool | None,
    wallet_source: str | None,
    key: str | None,
    since: _dt.datetime | None,
    until_: _dt.datetime | None,
) -> None:
    """Price the actions in HISTORY (JSONL or CSV), or those a wallet booked (--wallet), under
    each pricing model."""
    _one_source(history, wallet_source, "HISTORY")
    try:
        simulator = Simulator(
            list(models or _DEFAULT_MODELS),
            idle=_dt.timedelta(hours=idle_hours),
            max_open=max_open,
        )
        if wallet_source is not None:
            with open_wallet(wallet_source, key) as wallet:
                simulator.feed(wallet_rows(wallet, _utc(since), _utc(until_)), source="wallet")
            result = simulator.result()
            if result.rows == 0:
                raise click.ClickException(f"--wallet {wallet_source}: no records booked")
            if chart is not None:
                chart.write_text(chart_svg(result), encoding="utf-8")
            _write(render(result, output), out)  # type: ignore[arg-type]
            return
        assert history is not None
        fmt = _history_format(history, format_)
        show = sys.stderr.isatty() if progress is None else progress
        with history.open("rb") as stream:  # binary: JSONL is decoded by orjson if installed
            rows = read_history(
                stream,
                format=fmt,
                on_bad_row=simulator.bad_row if skip_bad_rows else None,
            )
            if sort:
                rows = sorted_by_time(rows)
            if show:
                _feed_with_bar(simulator, rows, stream, history.stat().st_size, history.name)
            else:
                simulator.feed(rows, source=history.name)
        result = simulator.result()
    except FlexCreditsError as exc:
        raise _fail(exc, skip_bad_rows) from None
    if result.rows == 0:
        raise _no_rows(history, result.bad_rows)
    if chart is not None:
        chart.write_text(chart_svg(result), encoding="utf-8")
    _write(render(result, output), out)  # type: ignore[arg-type]


def _feed_with_bar(
    simulator: Simulator, rows: Iterator[Any], stream: IO[bytes], size: int, source: str
) -> None:
    with click.progressbar(length=size, label="Reading", file=sys.stderr) as bar:
        done = 0
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == 65_536:
                simulator.feed(batch, source=source)
                batch = []
                where = min(stream.tell(), size)
                bar.update(where - done)
                done = where
        simulator.feed(batch, source=source)
        bar.update(size - done)


def _load_daily(
    source: Path, model: str | None, format_: str | None, skip_bad_rows: bool
) -> tuple[dict[Any, Any], int]:
    plan = resolve_model(model or "agentforce")
    if not isinstance(plan, CreditPlan):
        raise click.BadParameter(f"{plan.name!r} is not a credit plan", param_hint="--model")
    with source.open(encoding="utf-8-sig") as stream:
        head = stream.readline()
    is_daily = {"date", "credits"} <= {
        name.strip() for name in next(csv.reader(io.StringIO(head)), [])
    }
    if is_daily and format_ is None:
        try:
            daily = read_daily(source)
        except HistoryError as exc:  # a daily file has no rows to skip
            raise ConfigurationError(exc.field, exc.value, exc.reason) from None
    else:
        daily = daily_from_history(
            source, plan, format=_history_format(source, format_), skip_bad_rows=skip_bad_rows
        )
    if not daily:
        raise _no_rows(source, 0, skip_bad_rows)
    return daily, plan.rate_card.pack_credits


def _forecast_text(result: Forecast) -> str:
    lines = [f"Forecast from {result.start}: {result.method}"]
    for days, (p50, p90) in ((30, result.next_30), (90, result.next_90)):
        lines.append(
            f"Next {days} days: {credits_text(p50)} credits at P50, {credits_text(p90)} at P90"
        )
    pattern = ", ".join(f"{day} {credits_text(credits)}" for day, credits in result.weekly.items())
    lines.append(f"Weekly pattern (mean credits): {pattern}")
    if result.balance is not None:

        def when(day: _dt.date | None) -> str:
            return str(day) if day else "not within the forecast"

        lines.append(
            f"Balance {credits_text(result.balance)} runs out: {when(result.runs_out_p50)} at P50, "
            f"{when(result.runs_out_p90)} at P90"
        )
    if result.until is not None:
        lines.append(
            f"To last until {result.until}: buy {result.packs_p50} packs at P50, "
            f"{result.packs_p90} at P90 ({credits_text(result.pack_credits)} credits each)"
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
@click.argument(
    "source", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-m", "--model", help="The credit plan that prices a history (agentforce).")
@click.option("--format", "format_", type=_FORMATS, help="Read SOURCE as this history format.")
@click.option(
    "--balance", type=click.IntRange(min=0), help="Credits left now: gives the run-out dates."
)
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last until this date.")
@click.option("--horizon", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--pack-credits", type=click.IntRange(min=1), help="Credits per pack.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--skip-bad-rows", is_flag=True, help="Skip history rows that cannot be read.")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
@functools.partial(_wallet_options, until=False)
@click.option(
    "--by",
    "by_tag",
    metavar="TAG",
    help="With --wallet: also forecast the next 30 days of each value of this tag.",
)
def forecast_command(
    source: Path | None,
    model: str | None,
    format_: str | None,
    balance: int | None,
    until: _dt.datetime | None,
    horizon: int,
    pack_credits: int | None,
    seed: int,
    skip_bad_rows: bool,
    output: str,
    wallet_source: str | None,
    key: str | None,
    since: _dt.datetime | None,
    by_tag: str | None,
) -> None:
    """Forecast credit use from SOURCE (a date,credits CSV, or a history to price), or from
    what a wallet booked (--wallet): then also when its balance and each budget run out."""
    _one_source(source, wallet_source, "SOURCE")
    if by_tag is not None and wallet_source is None:
        raise click.UsageError("--by needs --wallet")
    budgets: list[BudgetOutlook] = []
    tags: list[TagOutlook] = []
    try:
        with contextlib.ExitStack() as stack:
            if wallet_source is not None:
                wallet = stack.enter_context(open_wallet(wallet_source, key))
                daily = wallet_daily(wallet, _utc(since))
                if not daily:
                    raise click.ClickException(f"--wallet {wallet_source}: no records booked")
                default_pack = wallet.rate_card.pack_credits
                if balance is None:
                    balance = max(wallet.balance().credits, 0)
            else:
                assert source is not None
                daily, default_pack = _load_daily(source, model, format_, skip_bad_rows)
            result = forecast(
                daily,
                horizon=horizon,
                balance=balance,
                until=until.date() if until else None,
                pack_credits=pack_credits or default_pack,
                seed=seed,
            )
            if wallet_source is not None:
                today = _dt.datetime.now(_dt.UTC).date()
                budgets = budget_outlooks(
                    wallet, wallet.budgets(), today=today, horizon=horizon, seed=seed
                )
                if by_tag is not None:
                    tags = tag_outlooks(wallet, by_tag, horizon=horizon, seed=seed)
    except FlexCreditsError as exc:
        raise _fail(exc, skip_bad_rows) from None
    if output == "json":
        data = result.model_dump(mode="json")
        if wallet_source is not None:
            data["budgets"] = [b.model_dump(mode="json") for b in budgets]
            if by_tag is not None:
                data["by_tag"] = {
                    "tag": by_tag,
                    "values": [t.model_dump(mode="json") for t in tags],
                }
        click.echo(json.dumps(data, indent=2, default=_jsonable))
    elif output == "csv":
        click.echo(_forecast_csv(result), nl=False)
    else:
        click.echo(_forecast_text(result), nl=False)
        if wallet_source is not None:
            click.echo(_outlooks_text(budgets, tags, by_tag), nl=False)


def _outlooks_text(budgets: list[BudgetOutlook], tags: list[TagOutlook], tag: str | None) -> str:
    lines = ["", "Budgets (what is left this period, and the day it runs out at P50 / P90):"]
    if not budgets:
        lines.append("  none")
    for outlook in budgets:
        b = outlook.budget
        scope = ", ".join(f"{k}={v}" for k, v in sorted(b.tags.items())) or "every action"
        period = f"per {b.period}" if b.period else "in total"
        if outlook.note:
            when = outlook.note
        else:

            def day(value: _dt.date | None) -> str:
                return str(value) if value else "not this period"

            when = f"{day(outlook.runs_out_p50)} / {day(outlook.runs_out_p90)}"
        lines.append(
            f"  {b.name} ({scope}; {credits_text(b.limit)} {period}, "
            f"{'hard' if b.hard else 'soft'}): {credits_text(outlook.left)} left, runs out {when}"
        )
    if tag is not None:
        lines += ["", f"Next 30 days by {tag} (credits at P50 / P90):"]
        for each in tags:
            name = each.value if each.value is not None else "(no tag)"
            if each.next_30 is None:
                lines.append(f"  {name}: {each.note}")
            else:
                p50, p90 = each.next_30
                lines.append(f"  {name}: {credits_text(p50)} / {credits_text(p90)}")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> str:
    if isinstance(value, Decimal | _dt.date):
        return str(value)
    raise TypeError(type(value).__name__)  # pragma: no cover


def register(group: click.Group) -> None:
    """Add the planning commands to the ``flexcredits`` command group."""
    group.add_command(simulate_command)
    group.add_command(forecast_command)
