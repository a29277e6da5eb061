"""Sorting history rows by time with bounded memory: an external merge sort.

Rows are gathered in runs of at most `run_rows`; a history that fits in one run is sorted in
memory. Otherwise each run is sorted and written to an anonymous temporary file (in
``tempfile.gettempdir()``, i.e. ``$TMPDIR``), in chunks, and `heapq.merge` reads the runs back a
chunk at a time. The sort is stable: rows with the same time keep their order in the file.
Memory holds one run while reading, then a chunk per run while merging.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import IO

from .._exceptions import ConfigurationError
from ._rows import HistoryRow

__all__ = ["RUN_ROWS", "sorted_by_time"]

#: Rows sorted in memory at a time (about 100 MB of typical rows).
RUN_ROWS = 250_000
_CHUNK = 4096
_TIME = itemgetter(8)  # HistoryRow.time_s
_new_row = tuple.__new__


def sorted_by_time(rows: Iterable[HistoryRow], *, run_rows: int = RUN_ROWS) -> Iterator[HistoryRow]:
    """Yield `rows` sorted by time (stable), holding at most `run_rows` of them in memory.

    Raises:
        ConfigurationError: `run_rows` is not a positive int.
        OSError: A temporary file cannot be written.
    """
    if isinstance(run_rows, bool) or not isinstance(run_rows, int) or run_rows < 1:
        raise ConfigurationError("run_rows", run_rows, "must be a positive int")
    runs: list[IO[bytes]] = []
    try:
        run: list[HistoryRow] = []
        for row in rows:
            if len(run) == run_rows:
                runs.append(_spill(run))
                run = []
            run.append(row)
        if not runs:
            run.sort(key=_TIME)
            yield from run
            return
        if run:
            runs.append(_spill(run))
            del run
        yield from heapq.merge(*(_read(file) for file in runs), key=_TIME)
    finally:
        for file in runs:
            file.close()


def _spill(run: list[HistoryRow]) -> IO[bytes]:
    """Sort `run` and write it to a temporary file, in chunks of plain tuples."""
    run.sort(key=_TIME)
    file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller, after the merge
    try:
        for start in range(0, len(run), _CHUNK):
            pickle.dump(
                [tuple(row) for row in run[start : start + _CHUNK]],
                file,
                pickle.HIGHEST_PROTOCOL,
            )
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


def _read(file: IO[bytes]) -> Iterator[HistoryRow]:
    """Yield the rows of one run, a chunk at a time."""
    load = pickle.load
    while True:
        try:
            chunk = load(file)
        except EOFError:
            return
        for values in chunk:
            yield _new_row(HistoryRow, values)
