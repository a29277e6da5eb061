"""The offline wallet: the Digital Wallet, in-process, with no server."""

from __future__ import annotations

import atexit
import datetime as _dt
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from .._ledger import Hold, Ledger, Overdraft, Period
from .._models import Alert, Balance, BudgetInfo, GrantInfo
from .._paging import Position, RecordStream, page_after, time_order
from .._pricing import RateCard
from .._process import WALLETS, LockedAcrossFork, at_fork
from .._records import UsageRecord, datetime_to_ns
from .._usage import (
    DEFAULT_KEEP_RECORDS,
    Bucket,
    DayTotals,
    RecordFilter,
    RecordLog,
    UsageReport,
    check_group_by,
    check_keep_records,
    group_usage,
    to_columns,
)
from .._validate import check_aware, check_credits, check_name, check_tags
from ._file import DURABILITIES, Batch, Durability, WalletFile

__all__ = ["OfflineWallet"]

#: Queued records are booked once this many wait: records that die young cost the garbage
#: collector least.
_DRAIN_AT = 128
#: A wallet file writes what was booked at least this often (durability ``"batch"``).
_COMMIT_EVERY_S = 0.5
#: Records booked and not yet written beyond which the booking thread writes them itself (it
#: also does when the writer thread has not written for `_COMMIT_EVERY_S`).
_MAX_WAITING = 65_536

logger = logging.getLogger("flexcredits_sdk")

AlertCallback = Callable[[Alert], Any]


def _parse_threshold(threshold: Any) -> tuple[int | Decimal | None, Decimal | None]:
    if isinstance(threshold, str):
        text = threshold.strip()
        if text.endswith("%"):
            try:
                percent = Decimal(text[:-1])
            except InvalidOperation:
                percent = Decimal("NaN")
            if percent.is_finite() and 0 < percent <= 100:
                return None, percent
        raise ConfigurationError(
            "threshold", threshold, "must be credits (int or Decimal) or a percentage like '10%'"
        )
    return check_credits(threshold, "threshold", allow_negative=True), None


class OfflineWallet(LockedAcrossFork):
    """A wallet that prices and books every action in this process.

    Thread-safe. One balance serves every environment (sandbox use draws from the same credits,
    as in the Digital Wallet); usage is reported per environment.

    Args:
        rate_card: Prices packs and credits in money (Agentforce Flex Credits by default).
        overdraft: ``"allow"`` (default) lets the balance go negative, showing what is owed;
            ``"deny"`` refuses actions the balance does not cover with `InsufficientCredits`,
            before their body runs.
        path: A SQLite file that is the wallet: its ledger and every record, kept across
            restarts; in memory when omitted. One process at a time may open a file (share a
            wallet between processes through the wallet service).
        keep_records: How many of the most recent records an in-memory wallet holds for
            `records()` (up to 255 more); ``None`` holds every record. Balances, budgets and
            `usage()` stay exact whatever it is (see `UsageReport.complete`). A wallet with
            a `path` keeps every record in its file and none in memory.
        durability: With a `path`: ``"batch"`` (default) writes records in group commits on
            a background thread, once 128 wait and at least every half second, so a crash of
            the process (SIGKILL) loses those booked since the last commit (never more than
            65,536); ``"each"`` commits and syncs every record before the call that booked
            it returns.
        clock: Returns the current Unix time in nanoseconds (for tests); `time.time_ns` by
            default. A record is booked at its end time, or at this clock's time if it
            ends later.
        time_zone: The IANA time zone (``"UTC"`` by default) in which day and month budget
            periods start, at midnight and on the 1st.

    Example:
        >>> wallet = OfflineWallet()
        >>> _ = wallet.buy_packs(1)
        >>> wallet.balance().credits
        100000
    """

    def __init__(
        self,
        *,
        rate_card: RateCard | None = None,
        overdraft: Overdraft = "allow",
        path: str | Path | None = None,
        clock: Callable[[], int] | None = None,
        keep_records: int | None = DEFAULT_KEEP_RECORDS,
        durability: Durability = "batch",
        time_zone: str = "UTC",
    ) -> None:
        keep_records = check_keep_records(keep_records)
        if durability not in DURABILITIES:
            raise ConfigurationError("durability", durability, f"must be one of {DURABILITIES}")
        if rate_card is not None and not isinstance(rate_card, RateCard):
            raise ConfigurationError("rate_card", rate_card, "must be a RateCard")
        self.rate_card = rate_card or RateCard.agentforce()
        self._ledger = Ledger(self.rate_card, overdraft=overdraft, time_zone=time_zone)
        self._log = RecordLog(keep_records)
        self._lock = threading.Lock()
        at_fork(self, WALLETS)
        self._clock = clock or time.time_ns
        self._alert_callbacks: list[AlertCallback] = []
        self._watch_callbacks: dict[str, AlertCallback] = {}
        self._pending: deque[UsageRecord] = deque()  # records to book
        self._durability = durability
        self._file: WalletFile | None = None
        self._totals = DayTotals()  # a wallet file's usage by day, all records
        self._touched = DayTotals()  # the part of it not written yet
        self._closed = threading.Event()
        self._wake = threading.Event()  # wakes the writer of a wallet file
        if path is not None:
            self._open(Path(path), overdraft, time_zone)
        self._update_mode()

    def _open(self, path: Path, overdraft: Overdraft, time_zone: str) -> None:
        wallet_file = WalletFile(path, self.rate_card, self._durability)
        try:
            self._ledger, self._totals, top = wallet_file.load(self.rate_card)
        except BaseException:
            wallet_file.close()
            raise
        self._ledger.overdraft = overdraft
        self._ledger.time_zone = time_zone
        wallet_file.top = top
        self._file = wallet_file
        if self._durability == "batch":
            writer = threading.Thread(
                target=_write_loop,
                args=(weakref.ref(self), self._closed, self._wake),
                name="flexcredits-wallet-file",
                daemon=True,
            )
            writer.start()
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    def __repr__(self) -> str:
        where = f"path={str(self._file.path)!r}" if self._file else "in memory"
        records = (self._totals.count if self._file else len(self._log)) + len(self._pending)
        dropped = f", dropped={self._log.dropped}" if self._log.dropped else ""
        return (
            f"OfflineWallet({where}, overdraft={self._ledger.overdraft!r}, "
            f"records={records}{dropped})"
        )

    # --- the meter's side ---------------------------------------------------------------------

    def authorize(self, action: str, credits: int | Decimal, tags: Mapping[str, str]) -> Hold:
        """Reserve `credits` for an action about to run, or refuse it.

        Raises:
            InsufficientCredits: The overdraft policy is ``"deny"`` and the balance is short.
            BudgetExceeded: A matching hard budget would be exceeded.
        """
        with self._lock:
            self._drain()
            return self._ledger.authorize(action, credits, tags, self._clock())

    def submit(self, record: UsageRecord, hold: Hold | None = None, /) -> None:
        """Book one finished record (once per id); the meter calls this for every action.

        When nothing can react to a booking (no file, no hold, budgets or low-balance watches),
        the record is only queued here, on the caller's thread, and booked with the others
        queued (see `book_many`) by the next call that reads or changes the wallet, or once
        128 wait: every answer still includes it.
        """
        if self._eager or hold is not None:
            self.book(record, hold)
        else:
            pending = self._pending
            pending.append(record)
            if len(pending) >= _DRAIN_AT:
                with self._lock:
                    self._drain()

    def book(self, record: UsageRecord, hold: Hold | None = None) -> bool:
        """Book one record unless its id was booked before; return whether it was booked now.

        Args:
            record: The record.
            hold: What `authorize` returned for its action, released now.
        """
        with self._lock:
            self._drain()
            if hold is not None:
                self._ledger.release(hold)
            added, fired = self._book_batch((record,))
        if fired:
            self._dispatch(fired)
        return bool(added)

    def book_many(self, records: Sequence[UsageRecord]) -> int:
        """Book records that arrived together, as the wallet service books a batch.

        Each id is booked once. The records are booked in the order of their end times, each
        at its end time or now if that is later (see `Ledger.booking_order`), whatever their
        order here: the service gives the same batch the same balances, budgets and alerts.

        Returns:
            How many were booked now (the others were booked before).
        """
        with self._lock:
            self._drain()
            added, fired = self._book_batch(records)
        if fired:
            self._dispatch(fired)
        return len(added)

    def _book_batch(
        self, records: Sequence[UsageRecord]
    ) -> tuple[Sequence[UsageRecord], list[Alert]]:
        """Book the records whose ids are new; the caller holds the lock."""
        wallet_file = self._file
        if wallet_file is None:
            added, columns = self._log.add_block(records)
        else:
            added = wallet_file.add_many(records)
            columns = to_columns(added) if added else None
        if not added:
            return added, []
        fired = self._ledger.book_many(added, self._clock(), columns)
        if wallet_file is not None:
            assert columns is not None
            self._totals.add_columns(columns)
            self._touched.add_columns(columns)
            waiting = wallet_file.pending
            late = time.monotonic() - wallet_file.written_at > _COMMIT_EVERY_S
            if (
                self._durability == "each"
                or waiting >= _MAX_WAITING
                or (waiting >= _DRAIN_AT and late)
            ):
                self._commit()  # now, on this thread (also when the writer thread is starved)
            elif waiting >= _DRAIN_AT:
                self._wake.set()  # the writer thread writes them
        return added, fired

    def _take(self) -> Batch:
        """Take what the file lacks; the caller holds the lock."""
        assert self._file is not None
        batch = self._file.take(self._ledger, self._totals, self._touched)
        self._touched = DayTotals()
        return batch

    def _commit(self) -> None:
        """Write what was booked and the ledger's state to the file now; the caller holds
        the lock."""
        if self._file is not None:
            batch = self._take()
            with self._file.write_lock:  # after a write the writer thread has under way
                self._file.write(batch)

    def _write_in_background(self) -> None:
        """Write what was booked, holding the wallet's lock only to take it."""
        wallet_file = self._file
        assert wallet_file is not None
        with self._lock:
            self._drain()
            if wallet_file.closed or not wallet_file.pending:
                return
            batch = self._take()
            wallet_file.write_lock.acquire()  # before the lock goes: writes keep their order
        try:
            wallet_file.write(batch)
        finally:
            wallet_file.write_lock.release()

    def _drain(self) -> None:
        """Book the queued records; the caller holds the lock.

        Records are queued only while nothing can react to them, so this fires no alerts.
        """
        pending = self._pending
        if pending:
            self._book_batch([pending.popleft() for _ in range(len(pending))])

    def _page(self, where: RecordFilter, position: Position | None, size: int) -> list[UsageRecord]:
        assert self._file is not None
        with self._lock:
            self._drain()
            self._commit()
            return self._file.page(where, position, size)

    @property
    def keep_records(self) -> int | None:
        """How many recent records the wallet holds at least; ``None``: every record."""
        return self._log.keep

    @property
    def dropped_records(self) -> int:
        """How many of the oldest records were let go to keep memory bounded (`keep_records`)."""
        with self._lock:
            self._drain()
            return self._log.dropped

    @property
    def authorizes(self) -> bool:
        """Whether an action needs a hold before it runs: overdraft denied, or a hard budget."""
        return self._authorizes

    def _update_mode(self) -> None:
        self._authorizes = self._ledger.authorizes
        each = self._file is not None and self._durability == "each"
        self._eager = bool(each or self._authorizes or self._ledger.reacts)

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything booked to the wallet file, if any; return ``True``."""
        with self._lock:
            self._drain()
            self._commit()
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Write everything booked to the wallet file, if any, and close it."""
        self._closed.set()
        self._wake.set()
        with self._lock:
            self._drain()
            if self._file is not None and not self._file.closed:
                try:
                    self._commit()
                finally:
                    self._file.close()
        return True

    close = shutdown

    # --- grants -------------------------------------------------------------------------------

    def grant(
        self,
        credits: int | Decimal,
        *,
        source: str = "grant",
        expires_at: _dt.datetime | None = None,
        priority: int = 1,
    ) -> GrantInfo:
        """Add credits.

        Args:
            credits: How many credits (positive int or Decimal).
            source: Where they come from, e.g. ``"purchase"``, ``"promotion"``, ``"seat"``.
            expires_at: When unused credits expire (timezone-aware), or never.
            priority: Burn order: grants with a lower number are used first; then the one
                expiring soonest; then the oldest.

        Raises:
            ConfigurationError: A value is out of range or of the wrong type.
        """
        credits = check_credits(credits, "credits", allow_zero=False)
        check_name(source, "source")
        expires_ns = (
            None if expires_at is None else datetime_to_ns(check_aware(expires_at, "expires_at"))
        )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError("priority", priority, "must be an int")
        with self._lock:
            self._drain()
            now = self._clock()
            info, fired = self._ledger.grant(
                credits, now_ns=now, source=source, priority=priority, expires_ns=expires_ns
            )
            self._commit()
        if fired:
            self._dispatch(fired)
        return info

    def buy_packs(self, packs: int = 1, *, expires_at: _dt.datetime | None = None) -> GrantInfo:
        """Add `packs` packs of the rate card's size (Agentforce: 100,000 credits for $500).

        Raises:
            ConfigurationError: `packs` is not a positive int.
        """
        if isinstance(packs, bool) or not isinstance(packs, int) or packs <= 0:
            raise ConfigurationError("packs", packs, "must be a positive int")
        return self.grant(
            packs * self.rate_card.pack_credits, source="purchase", expires_at=expires_at
        )

    def grants(self) -> list[GrantInfo]:
        """Return every grant with what is left of it, oldest first."""
        with self._lock:
            self._drain()
            return self._ledger.grants(self._clock())

    # --- questions ----------------------------------------------------------------------------

    def balance(self) -> Balance:
        """Return the current balance (one balance across every environment)."""
        with self._lock:
            self._drain()
            return self._ledger.balance(self._clock())

    def usage(
        self,
        group_by: Sequence[str] = (),
        *,
        environment: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        bucket: Bucket | None = None,
    ) -> UsageReport:
        """Return usage grouped by record fields and tags.

        Args:
            group_by: Record fields (``action``, ``action_type``, ``environment``,
                ``conversation_id``, ``outcome``) or tag keys, e.g. ``["department"]``.
                Empty: one row with the totals.
            environment: Only this environment.
            since: Only actions started at or after this (timezone-aware) time.
            until: Only actions started before this time.
            bucket: Also group by ``"hour"``, ``"day"`` or ``"month"`` (UTC).

        Returns:
            Rows with the most credits first; exact over every record booked, except where
            `UsageReport.complete` says that records no longer held could not be placed
            (grouping by ``conversation_id`` or by the hour, or a time range that cuts a day).
        """
        where = RecordFilter(environment=environment, since=since, until=until)
        with self._lock:
            self._drain()
            if self._file is not None:
                if self._totals.answers(check_group_by(group_by), bucket, where):
                    found: Any = ()  # every record is in the totals
                    earlier = self._totals
                else:
                    self._commit()
                    found, earlier = self._file.scan(where), None
                return group_usage(
                    found, group_by, self.rate_card, bucket=bucket, earlier=earlier, where=where
                )
            log = self._log
            return group_usage(
                log.select(where),
                group_by,
                self.rate_card,
                bucket=bucket,
                earlier=log.earlier if log.dropped else None,
                where=where,
            )

    def records(
        self,
        *,
        action: str | None = None,
        tags: Mapping[str, str] | None = None,
        environment: str | None = None,
        conversation_id: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> RecordStream:
        """Iterate over the booked records held, in time order, filtered by the arguments.

        The records are those held when this is called (an in-memory wallet holds its most
        recent `keep_records`; see `dropped_records`).

        Args:
            cursor: Go on after the record where an earlier stream's `cursor` stood.
            limit: Yield at most this many records.

        Raises:
            ConfigurationError: A filter, `cursor` or `limit` is not valid.
        """
        where = RecordFilter(
            action=action,
            tags=tags,
            environment=environment,
            conversation_id=conversation_id,
            since=since,
            until=until,
        )
        if self._file is not None:
            return RecordStream(
                lambda position, size: self._page(where, position, size),
                cursor=cursor,
                limit=limit,
            )
        ordered: list[UsageRecord] = []
        keys: list[Position] = []
        stream = RecordStream(
            lambda position, size: page_after(ordered, keys, position, size),
            cursor=cursor,
            limit=limit,
        )
        with self._lock:
            self._drain()
            ordered.extend(self._log.select(where))
        ordered.sort(key=time_order)
        keys.extend(map(time_order, ordered))
        return stream

    # --- budgets and alerts -------------------------------------------------------------------

    def set_budget(
        self,
        credits: int | Decimal,
        *,
        tags: Mapping[str, str] | None = None,
        period: Period | None = "month",
        hard: bool = True,
        name: str | None = None,
    ) -> BudgetInfo:
        """Limit the credits that actions carrying `tags` may use per period.

        A hard budget refuses an action that would exceed it with `BudgetExceeded` before the
        action's body runs; a soft one lets it run and sends a ``"budget"`` alert to the
        `on_alert` callbacks, once per period. A budget with the same tags and period replaces
        the earlier one.

        Args:
            credits: The limit per period.
            tags: The tags an action must carry to count (all of them); every action if empty.
            period: ``"month"`` or ``"day"`` (calendar, UTC), or ``None`` for no reset.
            hard: Refuse (True) or only alert (False).
            name: A readable name; made from the tags when omitted.
        """
        credits = check_credits(credits, "credits")
        tags = check_tags(tags or {})
        if not isinstance(hard, bool):
            raise ConfigurationError("hard", hard, "must be True or False")
        if name is not None:
            check_name(name, "name")
        with self._lock:
            self._drain()
            now = self._clock()
            info = self._ledger.set_budget(
                credits, now_ns=now, tags=tags, period=period, hard=hard, name=name
            )
            self._commit()
            self._update_mode()
        return info

    def remove_budget(self, budget_id: str) -> None:
        """Remove a budget set with `set_budget`, by its `BudgetInfo.id`.

        Raises:
            ConfigurationError: The wallet has no budget with that id.
        """
        with self._lock:
            self._drain()
            self._ledger.remove_budget(budget_id)
            self._commit()
            self._update_mode()

    def budgets(self) -> list[BudgetInfo]:
        """Return every budget with what it spent in its current period."""
        with self._lock:
            self._drain()
            return self._ledger.budgets(self._clock())

    def on_low_balance(self, threshold: int | Decimal | str, callback: AlertCallback) -> None:
        """Call `callback(alert)` each time the balance falls below `threshold`.

        Fires once per downward crossing and re-arms when the balance is back at or above the
        threshold (after a grant). Callbacks run on the thread that booked the record; an
        exception in one is logged, never raised.

        Args:
            threshold: Credits (negative: alert when that much is owed), or a percentage of the
                unexpired grants' credits such as ``"10%"``.
            callback: Called with an `Alert`.
        """
        credits, percent = _parse_threshold(threshold)
        if not callable(callback):
            raise ConfigurationError("callback", callback, "must be callable")
        with self._lock:
            self._drain()
            watch_id = self._ledger.watch_low_balance(
                credits=credits, percent=percent, now_ns=self._clock()
            )
            self._watch_callbacks[watch_id] = callback
            self._update_mode()

    def on_alert(self, callback: AlertCallback) -> None:
        """Call `callback(alert)` for every alert: low balance and budgets."""
        if not callable(callback):
            raise ConfigurationError("callback", callback, "must be callable")
        self._alert_callbacks.append(callback)

    def alerts(self) -> list[Alert]:
        """Return every alert fired so far, oldest first."""
        with self._lock:
            self._drain()
            return list(self._ledger.alerts)

    def _dispatch(self, fired: list[Alert]) -> None:
        for alert in fired:
            callbacks = list(self._alert_callbacks)
            if alert.watch_id in self._watch_callbacks:
                callbacks.insert(0, self._watch_callbacks[alert.watch_id])
            for callback in callbacks:
                try:
                    callback(alert)
                except Exception:
                    logger.exception("flexcredits alert callback %r failed", callback)


def _write_loop(
    wallet_ref: weakref.ref[OfflineWallet], closed: threading.Event, wake: threading.Event
) -> None:
    """Write what a wallet booked to its file when woken, and every `_COMMIT_EVERY_S`."""
    while True:
        wake.wait(_COMMIT_EVERY_S)
        wake.clear()
        wallet = wallet_ref()
        if wallet is None or closed.is_set():
            return
        try:
            wallet._write_in_background()
        except Exception:
            logger.exception("flexcredits: writing the wallet file failed; retrying")
        del wallet


def _shutdown_at_exit(wallet_ref: weakref.ref[OfflineWallet]) -> None:
    wallet = wallet_ref()
    if wallet is not None:
        wallet.shutdown()
