"""``flexcredits wallet balance|usage|records|export``: read a wallet file or a wallet service.

Each command reads a local wallet file (``--file``, an `OfflineWallet(path=...)` file) or a
wallet service (``--url`` and ``--key``, from ``FLEXCREDITS_URL`` and ``FLEXCREDITS_API_KEY``).
Answers are tables for people by default and JSON with ``--json``; ``export`` writes the history
format that ``flexcredits simulate`` and ``forecast`` read.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from .._environment import API_KEY_VARIABLE, URL_VARIABLE
from .._exceptions import FlexCreditsError
from .._format import credits_text, money_text
from .._pricing import RateCard
from .._records import UsageRecord
from ..planning._history import COLUMNS
from ._offline import OfflineWallet

__all__ = ["open_wallet", "register"]

F = TypeVar("F", bound=Callable[..., Any])


def _source(command: F) -> F:
    """The options that say which wallet to read."""
    for option in reversed(
        [
            click.option(
                "--file",
                "path",
                type=click.Path(dir_okay=False, path_type=Path),
                help="A wallet file (OfflineWallet(path=...)); else the service at --url.",
            ),
            click.option("--url", envvar=URL_VARIABLE, help=f"A wallet service (${URL_VARIABLE})."),
            click.option(
                "--key", envvar=API_KEY_VARIABLE, help=f"Its API key (${API_KEY_VARIABLE})."
            ),
            click.option(
                "--rate-card",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Prices credits in money for a wallet file (Agentforce by default).",
            ),
        ]
    ):
        command = option(command)
    return command


_json_option = click.option("--json", "as_json", is_flag=True, help="Answer in JSON.")
_UTC_DATETIME = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"])


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    return None if value is None else value.replace(tzinfo=_dt.UTC)


def _window(
    since: _dt.datetime | None, until: _dt.datetime | None
) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """Return the UTC window; refuse one that ends before it starts (it would find nothing)."""
    if since is not None and until is not None and until <= since:
        raise click.BadParameter(
            f"{until:%Y-%m-%dT%H:%M:%S} is not after --since {since:%Y-%m-%dT%H:%M:%S}",
            param_hint="--until",
        )
    return _utc(since), _utc(until)


@contextlib.contextmanager
def open_wallet(
    path: Path | None, url: str | None, key: str | None, card: Path | None
) -> Iterator[Any]:
    """Open the wallet the options name; every failure is one line (a `ClickException`)."""
    with contextlib.ExitStack() as stack:
        try:
            if path is not None:
                if not path.is_file():
                    raise click.ClickException(f"--file {path}: no such wallet file")
                rate_card = _rate_card(card) if card is not None else None
                wallet: Any = OfflineWallet(path=path, rate_card=rate_card)
            elif url:
                from ._http import HttpWallet

                outbox = stack.enter_context(tempfile.TemporaryDirectory(prefix="flexcredits-"))
                wallet = HttpWallet(url, key, outbox_dir=outbox)
            else:
                raise click.UsageError(
                    f"give --file PATH, or set {URL_VARIABLE} (and {API_KEY_VARIABLE}) for a "
                    "wallet service"
                )
            stack.callback(wallet.shutdown)  # before its outbox directory goes
            yield wallet
        except FlexCreditsError as exc:
            raise click.ClickException(str(exc)) from None


def _rate_card(path: Path) -> RateCard:
    """Load a rate card file; an error names the file (and the line, when it does not parse).

    Raises:
        ConfigurationError: The file does not parse or holds a bad rate card.
    """
    return RateCard.load(path)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    cells = [[str(h) for h in header]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@_source
@_json_option
def balance(
    path: Path | None, url: str | None, key: str | None, rate_card: Path | None, as_json: bool
) -> None:
    """Show the wallet's balance."""
    with open_wallet(path, url, key, rate_card) as wallet:
        answer = wallet.balance()
    if as_json:
        _dump(answer.model_dump(mode="json"))
        return
    _table(
        ("credits", "granted", "used", "expired", "held", "owed", "usd"),
        [
            (
                *(
                    credits_text(value)
                    for value in (
                        answer.credits,
                        answer.granted,
                        answer.used,
                        answer.expired,
                        answer.held,
                        answer.owed,
                    )
                ),
                money_text(answer.usd),
            )
        ],
        sys.stdout,
    )


@click.command()
@_source
@click.option("-g", "--group-by", multiple=True, help="A record field or tag key; repeat.")
@click.option("--environment", help="Only this environment.")
@click.option("--since", type=_UTC_DATETIME, help="Only actions started at or after (UTC).")
@click.option("--until", type=_UTC_DATETIME, help="Only actions started before (UTC).")
@click.option("--bucket", type=click.Choice(["hour", "day", "month"]), help="Also by time.")
@_json_option
def usage(
    path: Path | None,
    url: str | None,
    key: str | None,
    rate_card: Path | None,
    group_by: tuple[str, ...],
    environment: str | None,
    since: _dt.datetime | None,
    until: _dt.datetime | None,
    bucket: str | None,
    as_json: bool,
) -> None:
    """Show usage grouped by record fields and tags, the most credits first."""
    start, end = _window(since, until)
    with open_wallet(path, url, key, rate_card) as wallet:
        rows = wallet.usage(
            list(group_by), environment=environment, since=start, until=end, bucket=bucket
        )
    complete = getattr(rows, "complete", True)
    if as_json:
        _dump({"rows": [row.model_dump(mode="json") for row in rows], "complete": complete})
        return
    names = list(rows[0].key) if rows else [*group_by, *(["bucket"] if bucket else [])]
    _table(
        (*names, "actions", "records", "credits", "usd"),
        [
            (
                *row.key.values(),
                f"{row.actions:,}",
                f"{row.records:,}",
                credits_text(row.credits),
                money_text(row.usd),
            )
            for row in rows
        ],
        sys.stdout,
    )
    if not complete:
        click.echo("(incomplete: older records were let go; see keep_records)", err=True)


def _record_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--action", help="Only this action."),
            click.option("--tag", "tags", multiple=True, help="Only records with KEY=VALUE."),
            click.option("--environment", help="Only this environment."),
            click.option("--conversation", "conversation_id", help="Only this conversation."),
            click.option("--since", type=_UTC_DATETIME, help="Started at or after (UTC)."),
            click.option("--until", type=_UTC_DATETIME, help="Started before (UTC)."),
        ]
    ):
        command = option(command)
    return command


def _filters(
    action: str | None,
    tags: tuple[str, ...],
    environment: str | None,
    conversation_id: str | None,
    since: _dt.datetime | None,
    until: _dt.datetime | None,
) -> dict[str, Any]:
    wanted = {}
    for pair in tags:
        tag_key, sep, value = pair.partition("=")
        if not sep or not tag_key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        wanted[tag_key] = value
    start, end = _window(since, until)
    return {
        "action": action,
        "tags": wanted or None,
        "environment": environment,
        "conversation_id": conversation_id,
        "since": start,
        "until": end,
    }


@click.command()
@_source
@_record_options
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--cursor", help="Go on after where an earlier listing stopped.")
@_json_option
def records(
    path: Path | None,
    url: str | None,
    key: str | None,
    rate_card: Path | None,
    action: str | None,
    tags: tuple[str, ...],
    environment: str | None,
    conversation_id: str | None,
    since: _dt.datetime | None,
    until: _dt.datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List booked records in time order (JSON Lines with --json)."""
    where = _filters(action, tags, environment, conversation_id, since, until)
    with open_wallet(path, url, key, rate_card) as wallet:
        stream = wallet.records(**where, cursor=cursor, limit=limit)
        found = list(stream)
        more = len(found) == limit and limit > 0
        next_cursor = stream.cursor if more else None
    if next_cursor is not None:
        click.echo(f"more: --cursor {next_cursor}", err=True)
    if as_json:
        for record in found:
            click.echo(json.dumps(record.to_dict()))
        return
    _table(
        ("started_at", "action", "units", "credits", "outcome", "conversation", "tags"),
        [
            (
                record.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                record.action,
                credits_text(record.units),
                credits_text(record.credits),
                record.outcome,
                record.conversation_id,
                ";".join(f"{k}={v}" for k, v in record.tags.items()),
            )
            for record in found
        ],
        sys.stdout,
    )


def _history_row(record: UsageRecord) -> dict[str, Any]:
    return {
        "conversation_id": record.conversation_id,
        "action": record.action,
        "action_type": record.action_type,
        "timestamp": record.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "environment": record.environment,
        "tags": dict(record.tags),
        "resolved": record.tags.get("resolved") == "true",
        "units": record.units,
    }


@click.command()
@_source
@_record_options
@click.option(
    "--format",
    "format_",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="History rows as JSON Lines or CSV.",
)
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (stdout)."
)
def export(
    path: Path | None,
    url: str | None,
    key: str | None,
    rate_card: Path | None,
    action: str | None,
    tags: tuple[str, ...],
    environment: str | None,
    conversation_id: str | None,
    since: _dt.datetime | None,
    until: _dt.datetime | None,
    format_: str,
    out: Path | None,
) -> None:
    """Write booked records as a history that `flexcredits simulate` and `forecast` read."""
    where = _filters(action, tags, environment, conversation_id, since, until)
    with contextlib.ExitStack() as stack:
        wallet = stack.enter_context(open_wallet(path, url, key, rate_card))
        stream: IO[str] = (
            stack.enter_context(out.open("w", encoding="utf-8", newline=""))
            if out is not None
            else sys.stdout
        )
        count = _write_history(wallet.records(**where), format_, stream)
    if out is not None:
        click.echo(f"wrote {count:,} rows to {out}", err=True)


def _write_history(found: Iterator[UsageRecord], format_: str, stream: IO[str]) -> int:
    count = 0
    if format_ == "jsonl":
        for record in found:
            stream.write(json.dumps(_history_row(record), separators=(",", ":")) + "\n")
            count += 1
        return count
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in found:
        row = _history_row(record)
        pairs = row["tags"].items()
        if any(";" in part or "=" in part for pair in pairs for part in pair):
            raise click.ClickException(
                f"record {record.id}: a tag holds ';' or '=', which CSV history cannot: "
                "export with --format jsonl"
            )
        row["tags"] = ";".join(f"{k}={v}" for k, v in pairs)
        row["resolved"] = "true" if row["resolved"] else "false"
        writer.writerow([row[column] for column in COLUMNS])
        count += 1
    return count


def register(group: click.Group) -> None:
    """Add the reading commands to the ``wallet`` group."""
    for command in (balance, usage, records, export):
        group.add_command(command)
