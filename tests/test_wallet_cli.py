"""`flexcredits wallet balance|usage|records|export` on a wallet file and on a real service."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from server_fixtures import ServerProcess, pg_cluster, server

import flexcredits_sdk as fc
from flexcredits_sdk.cli import main
from flexcredits_sdk.planning import read_history, rows_from_records
from flexcredits_sdk.testing import FakeClock

__all__ = ["pg_cluster", "server"]

START = _dt.datetime(2026, 11, 2, 9, tzinfo=_dt.UTC)


def _fill(wallet: fc.OfflineWallet | fc.HttpWallet, clock: FakeClock, actions: int = 60) -> None:
    meter = fc.Meter(wallet=wallet, clock=clock)
    for i in range(actions):
        tags = {"department": ("hr", "it", "sales")[i % 3]}
        if i % 10 == 9:
            tags["resolved"] = "true"
        with fc.tags(**tags), fc.conversation(f"c-{i // 10}"), meter.action("answer") as act:
            act.units = 1 + i % 2
        clock.advance(600)


@pytest.fixture
def wallet_file(tmp_path: Path) -> Path:
    path = tmp_path / "wallet.db"
    clock = FakeClock(START)
    wallet = fc.OfflineWallet(path=path, clock=clock)
    wallet.buy_packs(1)
    _fill(wallet, clock)
    wallet.shutdown()
    return path


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["wallet", *args], env=env or {}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_balance_usage_and_records_of_a_wallet_file(wallet_file: Path) -> None:
    code, out, _ = run("balance", "--file", str(wallet_file), "--json")
    assert code == 0
    assert json.loads(out)["used"] == 60 * 30  # 20 credits, 1 or 2 units, alternating

    code, out, _ = run("usage", "--file", str(wallet_file), "-g", "department", "--json")
    answer = json.loads(out)
    assert answer["complete"] is True
    assert {row["key"]["department"]: row["records"] for row in answer["rows"]} == {
        "hr": 20,
        "it": 20,
        "sales": 20,
    }
    code, out, _ = run("usage", "--file", str(wallet_file), "-g", "department")
    assert out.splitlines()[0].split() == ["department", "actions", "records", "credits", "usd"]
    assert len(out.splitlines()) == 4

    code, out, err = run("records", "--file", str(wallet_file), "--limit", "25", "--json")
    first = [json.loads(line) for line in out.splitlines()]
    assert len(first) == 25
    cursor = err.split("--cursor ")[1].strip()
    code, out, err = run(
        "records", "--file", str(wallet_file), "--limit", "100", "--cursor", cursor, "--json"
    )
    rest = [json.loads(line) for line in out.splitlines()]
    assert len(rest) == 35
    assert err == ""  # no more pages
    starts = [r["start_time_ns"] for r in first + rest]
    assert starts == sorted(starts)

    code, out, _ = run("records", "--file", str(wallet_file), "--tag", "department=it")
    assert len(out.splitlines()) == 1 + 20  # the header and the records


@pytest.mark.parametrize("format_", ["jsonl", "csv"])
def test_export_writes_the_history_simulate_reads(
    wallet_file: Path, tmp_path: Path, format_: str
) -> None:
    out = tmp_path / f"history.{format_}"
    code, _, err = run("export", "--file", str(wallet_file), "--format", format_, "-o", str(out))
    assert code == 0
    assert "wrote 60 rows" in err
    wallet = fc.OfflineWallet(path=wallet_file)
    try:
        expected = list(rows_from_records(wallet.records()))
    finally:
        wallet.shutdown()
    read = list(read_history(out))
    fields = ("conversation_id", "action", "action_type", "environment", "units", "resolved")
    assert [[getattr(r, f) for f in fields] + [dict(r.tags)] for r in read] == [
        [getattr(r, f) for f in fields] + [dict(r.tags)] for r in expected
    ]
    assert sum(r.resolved for r in read) == 6

    # "What would this have cost per conversation": the export is a history to simulate.
    result = CliRunner().invoke(
        main, ["simulate", str(out), "-m", "per-conversation", "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["conversations"] == 6


def test_the_commands_read_a_wallet_service(server: ServerProcess, tmp_path: Path) -> None:
    name = f"cli-{tmp_path.name[-20:]}"
    key = server.tenant(name)
    server.grant(name, 10_000)
    clock = FakeClock(START)
    wallet = fc.HttpWallet(server.url, key, outbox_dir=tmp_path / "outbox")
    try:
        _fill(wallet, clock, actions=30)
        assert wallet.flush(30)
    finally:
        wallet.shutdown()
    env = {"FLEXCREDITS_URL": server.url, "FLEXCREDITS_API_KEY": key}
    code, out, _ = run("balance", "--json", env=env)
    assert code == 0
    assert json.loads(out)["used"] == 30 * 30
    code, out, _ = run("records", "--limit", "0", "--json", env=env)
    assert out == ""
    code, out, _ = run("export", env=env)
    assert len(out.splitlines()) == 30
    code, out, err = run("balance", env={**env, "FLEXCREDITS_API_KEY": "fck_wrong"})
    assert code == 1
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["balance"], "give --file PATH, or set FLEXCREDITS_URL"),
        (["balance", "--file", "missing.db"], "no such wallet file"),
        (["records", "--file", "{file}", "--tag", "department"], "is not KEY=VALUE"),
        (["records", "--file", "{file}", "--cursor", "nonsense"], "cursor='nonsense'"),
    ],
)
def test_mistakes_are_one_clear_line(wallet_file: Path, args: list[str], message: str) -> None:
    code, _, err = run(*[a.replace("{file}", str(wallet_file)) for a in args])
    assert code != 0
    assert message in err
    assert "Traceback" not in err


def test_a_tag_csv_cannot_hold_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "wallet.db"
    wallet = fc.OfflineWallet(path=path)
    with fc.tags(note="a=b"):
        fc.Meter(wallet=wallet).metered_action(lambda: None)()
    wallet.shutdown()
    code, _, err = run("export", "--file", str(path), "--format", "csv")
    assert code == 1
    assert "--format jsonl" in err
