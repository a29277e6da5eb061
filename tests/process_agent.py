"""An agent process that forks, or starts `multiprocessing` workers, while it meters.

    python tests/process_agent.py SCENARIO URL API_KEY OUTBOX_DIR REPORT [COUNT]

Scenarios:
    forks      A thread meters without pause (the exporter committing all the while) while the
               main thread forks COUNT children one after the other; each child meters 100
               actions, shuts its meter down and ends with ``os._exit``.
    factory    The same with a function making an ``httpx.Client`` given to the wallet.
    given      The same with an ``httpx.Client`` given to the wallet: the children may not
               send through it (it is the parent's); the parent sends their records.
    process    COUNT ``multiprocessing.Process`` children (fork) meter 200 actions each and
               return, ending as multiprocessing ends them (``os._exit``, no atexit).
    pool-fork  A pool of 4 forked workers runs COUNT tasks of 100 actions, then is closed and
               joined.
    pool-spawn The same with spawned workers.

Every process appends one line per fact to REPORT, each with one ``os.write`` (so the lines
survive whatever ends the process): ``metered <n>`` and, for forked children, ``fork <seconds>``
(how long ``os.fork()`` took to return in the child) and ``error <last_error>``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx

from flexcredits_sdk import Meter
from flexcredits_sdk.wallets import HttpWallet

SETTINGS: dict[str, Any] = {"commit_interval": 0.001, "linger": 0.01, "max_backoff": 0.2}


def report(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def new_meter(url: str, key: str, outbox: str, **options: Any) -> Meter:
    return Meter(wallet=HttpWallet(url, key, outbox_dir=outbox, **SETTINGS, **options))


def meter_some(meter: Meter, count: int, name: str) -> int:
    for i in range(count):
        with meter.action("answer", tags={"agent": name, "kind": f"k{i % 3}"}):
            pass
    return count


def forks(url: str, key: str, outbox: str, path: str, count: int, **options: Any) -> None:
    meter = new_meter(url, key, outbox, **options)
    stop = threading.Event()
    done: list[int] = []

    def busy() -> None:
        n = 0
        while not stop.wait(0.002):
            n += meter_some(meter, 10, "parent")
        done.append(n)

    thread = threading.Thread(target=busy)
    thread.start()
    children = []
    with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        for n in range(count):
            time.sleep(0.02)
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                report(path, f"fork {time.monotonic() - started:.3f}")
                meter_some(meter, 100, f"child-{n}")
                meter.shutdown(timeout=60)
                report(path, "metered 100")
                report(path, f"error {meter.stats().last_error}")
                os._exit(0)
            children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    stop.set()
    thread.join()
    report(path, f"metered {done[0]}")
    meter.shutdown(timeout=60)


def _process_child(url: str, key: str, outbox: str, path: str, name: str) -> None:
    meter = new_meter(url, key, outbox)
    report(path, f"metered {meter_some(meter, 200, name)}")


_WORKER: dict[str, Any] = {}


def _pool_start(url: str, key: str, outbox: str) -> None:
    _WORKER["meter"] = new_meter(url, key, outbox)


def _pool_task(path: str, n: int) -> int:
    report(path, f"metered {meter_some(_WORKER['meter'], 100, f'task-{n}')}")
    return n


def processes(url: str, key: str, outbox: str, path: str, count: int) -> None:
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        children = [
            context.Process(target=_process_child, args=(url, key, outbox, path, f"p{n}"))
            for n in range(count)
        ]
        for child in children:
            child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0


def pool(method: str, url: str, key: str, outbox: str, path: str, count: int) -> None:
    context = multiprocessing.get_context(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        workers = context.Pool(4, initializer=_pool_start, initargs=(url, key, outbox))
    assert sorted(workers.starmap(_pool_task, [(path, n) for n in range(count)])) == list(
        range(count)
    )
    workers.close()
    workers.join()


def main(scenario: str, url: str, key: str, outbox: str, path: str, count: int) -> None:
    runs: dict[str, Callable[[], None]] = {
        "forks": lambda: forks(url, key, outbox, path, count),
        "factory": lambda: forks(
            url, key, outbox, path, count, client=lambda: httpx.Client(timeout=10.0)
        ),
        "given": lambda: forks(url, key, outbox, path, count, client=httpx.Client(timeout=10.0)),
        "process": lambda: processes(url, key, outbox, path, count),
        "pool-fork": lambda: pool("fork", url, key, outbox, path, count),
        "pool-spawn": lambda: pool("spawn", url, key, outbox, path, count),
    }
    runs[scenario]()


if __name__ == "__main__":
    scenario, url, key, outbox, path = sys.argv[1:6]
    main(scenario, url, key, outbox, path, int(sys.argv[6]) if len(sys.argv) > 6 else 4)
