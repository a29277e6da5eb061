"""The benchmarks run, with tiny figures, and print every line they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_overhead_prints_a_ratio_per_kind_and_sink() -> None:
    out = _run("overhead.py", "--calls", "300", "--rounds", "1", "--passes", "2")
    rows = [line.split() for line in out.splitlines() if line.startswith(("sync", "async", "gen"))]
    assert {(row[0], row[1]) for row in rows} == {
        (kind, sink) for kind in ("sync", "async", "generator") for sink in ("offline", "exporter")
    }
    assert all(float(row[-1]) > 0 for row in rows)


def test_delivery_prints_overhead_work_throughput_and_memory() -> None:
    out = _run(
        "delivery.py",
        *("--calls", "300", "--rounds", "1", "--passes", "1"),
        *("--records", "4000", "--queued", "5000", "--max-queue", "1000"),
    )
    assert "caller-thread CPU per call" in out
    assert "delivery work: 2,000 records (delivered=True)" in out
    assert "throughput: 4,000 records from 4 threads" in out
    assert "booked by the wallet: 4,000" in out
    memory = next(line for line in out.splitlines() if line.startswith("memory:"))
    assert memory.endswith("dropped 0")
    assert "on disk 5,000" in memory


def test_wallet_prints_memory_cost_and_the_file_figures() -> None:
    out = _run("wallet.py", "--actions", "3000", "--round", "500")
    assert "3,000 actions through the default in-memory OfflineWallet" in out
    assert "records held 3,000 (keep_records=100,000), let go 0" in out
    assert "usage by department counts 3,000 records, complete=True" in out
    assert "3,000 actions through OfflineWallet(path=...)" in out
    assert "opening it:" in out
    assert "(3,000 records)" in out


def test_records_paging_reads_back_every_record() -> None:
    out = _run("records_paging.py", "--records", "12000", "--page", "5000")
    assert "12,000 records booked" in out
    assert "read 12,000 records back in pages of 5,000" in out
    assert "server RSS before the listing" in out


def test_authorize_prints_cost_round_trips_and_holds_per_second() -> None:
    out = _run(
        "authorize.py",
        *("--calls", "300", "--rounds", "1", "--passes", "1"),
        *("--actions", "400", "--warmup", "200", "--hold-threads", "2", "--hold-seconds", "0.3"),
        *("--pg-workers", "1"),
    )
    lines = out.splitlines()
    assert sum(line.startswith(("load at start:", "load at end:")) for line in lines) == 2
    assert "load average" in lines[0]
    assert "load average" in lines[-1]
    assert "1. caller's cost per action, through the exporter" in out
    for row in ("bare call", "OTel span", "no auth (A)", "leased (B)"):
        words = len(row.split())
        found = [line.split() for line in lines if line.split()[:words] == row.split()]
        assert len(found) == 1, (row, found)
        assert found[0][words:][1::2] == ["ns"] * 4, found
    ratio = next(line for line in lines if "leased/no-auth:" in line)
    assert float(ratio.split("leased/no-auth: ")[1].split()[0]) > 0
    assert "target: leased/no-auth <= 1.5" in out
    trips = [line for line in lines if "per 1,000 actions (holds" in line]
    assert [line.split(":")[0].strip() for line in trips] == ["1 thread", "4 threads"]
    assert all("in 400 actions after 200 of warm-up" in line for line in trips)
    assert "target: <= 20 per 1,000 actions" in out
    assert "3. holds granted per second: 2 client threads" in out
    sqlite = next(line.split() for line in lines if line.strip().startswith("sqlite (1 process)"))
    assert int(sqlite[3].replace(",", "")) > 0  # holds granted
    postgresql = next(line for line in lines if line.strip().startswith("postgresql"))
    if os.environ.get("CI"):  # CI installs PostgreSQL; only a machine without it may say so
        assert "not measured" not in postgresql, postgresql
    if "not measured" not in postgresql:
        assert postgresql.split()[:3] == ["postgresql", "(1", "process)"]
        assert int(postgresql.split()[3].replace(",", "")) > 0


def test_forecast_backtests_real_series_and_prints_every_figure() -> None:
    out = _run("forecast.py", "--series", "taylor", "--series", "nile", "--paths", "200")
    lines = out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("taylor", "nile"))}
    assert rows["taylor"][1:4] == ["daily", "84", "13"]
    assert rows["nile"][1:4] == ["yearly", "100", "15"]
    for row in rows.values():
        ours, naive, holt_winters, auto_ets, cover = (float(v) for v in row[4:9])
        assert 0 < ours < 2 * naive
        assert holt_winters > 0
        assert auto_ets > 0
        assert 0 <= cover <= 100
        assert " ".join(row[10:]).startswith("median of ETS(")
    assert next(line for line in lines if line.startswith("mean of 1 daily"))
    assert "targets: mean MAPE below AutoETS's:" in out
