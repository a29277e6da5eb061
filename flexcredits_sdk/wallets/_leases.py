"""Leases: credit a wallet service reserves for this process, so actions are authorized here.

When the tenant denies overdraft, or a hard budget matches an action's tags, an action may run
only under a hold (``POST /v1/holds``). Asking for one per action would put a round trip in
front of every action; instead this process holds a *lease* per set of matched budgets: a hold
of a block of credits, sized to about a second of that key's burn rate, from which actions
draw in memory. Each record carries its lease's ``hold_id`` and settles against it on the
service. A lease that runs low, or nears its expiry, is replaced; the old one is given back
(``DELETE``) once every action that drew on it has been submitted and delivered. Unused credit
also goes back on `flush`, `shutdown` and after `idle` seconds; a forked child forgets its
parent's leases; the leases of a process that dies expire on the service after their ttl.

The policy (``GET /v1/spend-control``) says whether any of this is needed. It is cached like
the rate card; while it says nothing needs a hold, `authorizes` is ``False`` and the meter does
not call `authorize` at all, until the policy is old enough to be asked for again.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .. import _process
from .._exceptions import ActionRefused, BudgetExceeded, InsufficientCredits
from .._export import Transport
from .._models import HoldInfo
from .._records import UsageRecord, add_tick, remove_tick
from .._wire import RefusalResponse
from ._holds import Budget, HoldClient, LeaseSettings, Policy, Refused

__all__ = ["Leases"]

logger = logging.getLogger("flexcredits_sdk")

#: The share of a lease's life it is drawn on; the rest is left for its records to arrive.
_USABLE = 0.8
#: A block holds about this many seconds of its key's burn rate.
_BLOCK_SECONDS = 1.0
#: Seconds a key's refill waits after the service refused one (the credit is running out: the
#: caller's own request, when its lease is spent, says so).
_REFILL_PAUSE = 1.0
#: The shortest window a burn rate is measured over, so a first burst does not look endless:
#: a block is at most ten times the one before.
_MIN_WINDOW = 0.1


class _Lease:
    """One hold and what this process drew from it (guarded by `Leases._lock`)."""

    __slots__ = (
        "created",
        "credits",
        "expires",
        "hold_id",
        "key",
        "low",
        "pending",
        "refill",
        "remaining",
        "tags",
        "usable_until",
        "used_at",
    )

    def __init__(
        self, key: tuple[Budget, ...], info: HoldInfo, tags: dict[str, str], now: float, ttl: float
    ) -> None:
        self.key = key
        self.hold_id = info.id
        self.tags = tags
        self.credits: int | Decimal = info.credits
        self.remaining: int | Decimal = info.remaining
        self.pending = 0  # actions authorized from it whose records were not submitted yet
        self.created = self.used_at = now
        self.usable_until = now + ttl * _USABLE
        self.expires = now + ttl
        #: Below half the block, the next one is asked for in the background (`Leases._refill`):
        #: a block lasts about a second and a round trip milliseconds, so the next block is
        #: there before it is needed and no action waits for one.
        self.low: float | Decimal = info.credits / 2
        self.refill = False  # whether the next block was asked for


#: What `authorize` returns and `submit` gets back: the lease and the credits drawn on it.
_Ticket = tuple[_Lease, int | Decimal]
#: The budgets an action matches (the policy's own objects, hashed by identity): a lease's key.
_Key = tuple[Budget, ...]


class Leases:
    """The holds of one wallet service, shared by `HttpWallet` and `AsyncHttpWallet`.

    Args:
        transport: The exporter's transport: its client, headers and endpoints.
        flush: Delivers the records submitted so far (the exporter's ``flush(timeout)``).
        settings: The lease settings.
        policy_max_age: Seconds the spend-control policy is used before it is asked again.
        timeout: Seconds for delivering records before a hold is given back.
        sleep: Waits between attempts of a hold request (for tests).
        clock: Monotonic seconds (for tests).
    """

    def __init__(
        self,
        transport: Transport,
        flush: Callable[[float | None], bool],
        settings: LeaseSettings,
        *,
        policy_max_age: float,
        timeout: float,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = HoldClient(transport, sleep)
        self._flush = flush
        self.settings = settings
        self._off = settings.lease == "off"
        self._per_action = settings.lease == "per_action"
        self._max_age = policy_max_age
        self._timeout = timeout
        self._clock = clock or time.monotonic
        self._policy: Policy | None = None
        self._policy_due = -math.inf
        self._policy_lock = threading.Lock()
        self._ticking: Callable[[], None] | None = None
        #: Read by the meter before every action: a plain attribute.
        self.authorizes = not self._off
        self._fresh()
        _process.at_fork(self, _process.WALLETS)
        _process.at_exit(self)

    def _fresh(self) -> None:
        """Start with no leases (at first, and in a forked child)."""
        self._lock = threading.Lock()
        self._current: dict[_Key, _Lease] = {}
        self._next: dict[_Key, _Lease] = {}  # taken in the background, not drawn on yet
        self._refills: queue.SimpleQueue[tuple[_Lease, int | Decimal, Policy] | None] = (
            queue.SimpleQueue()
        )
        self._refiller: threading.Thread | None = None
        self._refill_refused: dict[_Key, float] = {}
        self._retired: list[_Lease] = []  # replaced, to give back once their records are sent
        self._settled: deque[_Lease] = deque()  # a lease per record submitted, for `_drain`
        self._key_locks: dict[_Key, threading.Lock] = {}
        self._rates: dict[tuple[str, ...], float] = {}  # credits per second, by budget ids
        self._wake = threading.Event()
        self._reaper: threading.Thread | None = None
        self._stopping = False
        self._refused = 0

    # --- the policy ---------------------------------------------------------------------------

    def _refresh(self, now: float) -> Policy:
        """Return the policy, asking the service when it is unknown or old (one thread asks)."""
        with self._policy_lock:
            if self._policy is not None and now < self._policy_due:
                return self._policy
            policy, max_age = self._client.policy(self._max_age)
            self._policy, self._policy_due = policy, self._clock() + max_age
            self.authorizes = policy.needed
            if not policy.needed:
                self._watch()
            return policy

    def _watch(self) -> None:
        """Turn `authorizes` on again once the policy is due, from the first action after."""
        if self._ticking is not None:
            return
        ref = weakref.ref(self)

        def tick() -> None:
            me = ref()
            try:
                if me is None:
                    remove_tick(tick)
                elif me._clock() >= me._policy_due:
                    me.authorizes = not me._off
                    me._ticking = None
                    remove_tick(tick)
            except Exception:  # pragma: no cover - a tick never raises
                pass

        self._ticking = tick
        add_tick(tick)

    # --- authorize and submit (the caller's thread) -------------------------------------------

    def authorize(
        self, action: str, credits: int | Decimal, tags: Mapping[str, str]
    ) -> _Ticket | None:
        """Draw `credits` for an action from this process's lease, or take a new hold.

        Returns:
            A ticket for `settle`, or ``None`` when the action needs no hold (or the service
            cannot be asked: logged, and the action runs).

        Raises:
            InsufficientCredits: The tenant denies overdraft and cannot cover the action.
            BudgetExceeded: A hard budget matched by `tags` cannot cover it.
        """
        if self._off:
            return None
        now = self._clock()
        if now >= self._policy_due:  # also while the policy is unknown
            self._refresh(now)
        policy = self._policy
        if policy is None or not policy.needed or not credits:
            return None
        key: _Key = ()
        if policy.budgets:
            items = tags.items()
            key = tuple([b for b in policy.budgets if b.items <= items])
            if not key and not policy.deny:
                return None
        if self._per_action:
            return self._single(action, credits, key, policy)
        with self._lock:
            ticket = self._draw(key, credits, policy, now)
        return ticket or self._renew(action, credits, key, policy)

    def _draw(
        self, key: _Key, credits: int | Decimal, policy: Policy, now: float
    ) -> _Ticket | None:
        """Draw `credits` from the key's lease, or else from the block taken in the background
        (which then becomes the key's lease); ``None`` when neither covers them (under
        `_lock`)."""
        lease = self._current.get(key)
        if lease is None or lease.remaining < credits or now >= lease.usable_until:
            lease = self._next.get(key)
            if lease is None or lease.remaining < credits or now >= lease.usable_until:
                return None
            del self._next[key]
            self._promote(key, lease)
        lease.remaining -= credits
        lease.pending += 1
        lease.used_at = now
        if lease.remaining < lease.low and not lease.refill:
            self._ask_refill(lease, credits, policy, now)
        return lease, credits

    def _ask_refill(
        self, lease: _Lease, credits: int | Decimal, policy: Policy, now: float
    ) -> None:
        """Have the next block of `lease`'s key taken in the background (under `_lock`)."""
        lease.refill = True
        if now < self._refill_refused.get(lease.key, -math.inf) or self._stopping:
            return
        self._refills.put((lease, credits, policy))
        if self._refiller is None or not self._refiller.is_alive():
            self._refiller = threading.Thread(
                target=self._refill, name="flexcredits-lease-refill", daemon=True
            )
            self._refiller.start()

    def _refill(self) -> None:
        """Take the next blocks that actions asked for, one at a time, off their threads."""
        while not self._stopping:
            try:
                asked = self._refills.get(timeout=self.settings.lease_idle)
            except queue.Empty:
                return  # the next request starts another thread
            if asked is None:  # shutdown
                return
            lease, credits, policy = asked
            try:
                self._refill_one(lease, credits, policy)
            except Exception:  # pragma: no cover - the thread must go on
                logger.exception("flexcredits: taking the next lease failed")

    def _key_lock(self, key: _Key) -> threading.Lock:
        """The lock of one key: the thread holding it is the one asking for the key's block."""
        return self._key_locks.get(key) or self._key_locks.setdefault(key, threading.Lock())

    def _refill_one(self, asking: _Lease, credits: int | Decimal, policy: Policy) -> None:
        """Take the block after `asking` for its key, unless one came meanwhile."""
        key = asking.key
        # Under the key's lock, as `_renew`: an action whose lease ran out meanwhile waits for
        # this block rather than asking for another.
        with self._key_lock(key):
            now = self._clock()
            with self._lock:
                current = self._current.get(key)
                if key in self._next or current is not asking:
                    return  # an action whose lease ran out took a new one itself
            try:
                lease = self._take(key, self._block(key, credits, current, now), credits, policy)
            except Refused:
                with self._lock:
                    self._refill_refused[key] = self._clock() + _REFILL_PAUSE
                return
            if lease is None:
                return
            with self._lock:
                keep = not self._stopping and key not in self._next
                if keep:
                    self._next[key] = lease
        if keep:
            self._start_reaper()
        else:
            self._client.release(lease.hold_id)

    def settle(self, record: UsageRecord, ticket: _Ticket) -> None:
        """Count a submitted record's real credits against the lease it drew on."""
        lease, drawn = ticket
        more = record[4] - drawn  # the units may change while the body runs
        if more or self._per_action:
            with self._lock:
                lease.pending -= 1
                lease.remaining -= more
                if self._per_action and lease.remaining > 0:  # failed, or fewer units
                    self._retired.append(lease)
                    self._start_reaper()
        else:
            self._settled.append(lease)  # no lock: counted out of `pending` by `_drain`

    def _single(
        self,
        action: str,
        credits: int | Decimal,
        key: _Key,
        policy: Policy,
    ) -> _Ticket | None:
        """``lease="per_action"``: a hold of exactly `credits`, settled by the record."""
        try:
            lease = self._hold(key, credits, policy)
        except Refused as refused:
            raise self._refusal(action, credits, refused.answer, key) from None
        if lease is None:
            return None
        lease.remaining -= credits
        lease.pending = 1
        return lease, credits

    def _renew(
        self,
        action: str,
        credits: int | Decimal,
        key: _Key,
        policy: Policy,
    ) -> _Ticket | None:
        """Take a new block for `key` (one thread per key; the others wait and draw on it)."""
        with self._key_lock(key):
            now = self._clock()
            with self._lock:
                ticket = self._draw(key, credits, policy, now)
                old = self._current.get(key)
            if ticket is not None:
                return ticket
            try:
                lease = self._take(key, self._block(key, credits, old, now), credits, policy)
            except Refused as refused:
                answer = refused.answer
                if self._reclaim():  # idle credit of this process may be what is missing
                    try:
                        lease = self._hold(key, credits, policy)
                    except Refused as again:
                        answer = again.answer
                        lease = None
                    if lease is not None:
                        return self._install(key, lease, credits)
                raise self._refusal(action, credits, answer, key) from None
            if lease is None:
                return None
            return self._install(key, lease, credits)

    def _take(
        self, key: _Key, size: int | Decimal, credits: int | Decimal, policy: Policy
    ) -> _Lease | None:
        """Ask for a block of `size`; when refused, for what the refusal says is left (in
        whole actions), then for this action alone.

        Raises:
            Refused: The last request was refused.
        """
        try:
            return self._hold(key, size, policy)
        except Refused as refused:
            if size == credits:
                raise
            left = refused.answer.refusal.available // credits
            fits = credits * max(1, min(left, size // credits))
        if credits < fits < size:
            try:
                return self._hold(key, fits, policy)
            except Refused:
                pass
        return self._hold(key, credits, policy)

    def _promote(self, key: _Key, lease: _Lease) -> None:
        """Make `lease` the key's lease; the one it replaces is given back once the actions
        that drew on it are done (under `_lock`)."""
        old = self._current.get(key)
        self._current[key] = lease
        if old is not None:
            self._retired.append(old)

    def _install(self, key: _Key, lease: _Lease, credits: int | Decimal) -> _Ticket:
        with self._lock:
            self._drain()  # so what waits there is at most about a block's actions
            self._promote(key, lease)
            lease.remaining -= credits
            lease.pending += 1
        self._start_reaper()
        return lease, credits

    def _drain(self) -> None:
        """Count the records submitted since the last time out of their leases' `pending`
        (under `_lock`)."""
        settled = self._settled
        while settled:
            settled.popleft().pending -= 1

    def _block(
        self, key: _Key, credits: int | Decimal, old: _Lease | None, now: float
    ) -> int | Decimal:
        """Return the size of a new block: about a second of the key's burn rate, a whole
        number of `credits`, at least `credits` and at most `lease_max_credits` (unless one
        action costs more)."""
        ids = tuple(b.id for b in key)  # the same after the policy is fetched again
        rate = self._rates.get(ids, 0.0)
        if old is not None:
            burned = old.credits - old.remaining
            measured = float(burned) / max(now - old.created, _MIN_WINDOW)
            # follow a rise at once, a fall by halves
            rate = measured if measured >= rate else (rate + measured) / 2
            self._rates[ids] = rate
        if not credits:
            return credits
        actions = max(1, math.ceil(rate * _BLOCK_SECONDS / float(credits)))
        most = int(self.settings.lease_max_credits // credits)
        return credits * max(1, min(actions, most))

    def _refusal(
        self,
        action: str,
        credits: int | Decimal,
        answer: RefusalResponse,
        matched: tuple[Budget, ...],
    ) -> ActionRefused:
        """Return the refusal to raise, with what other processes hold."""
        self._refused += 1
        refusal = answer.refusal
        elsewhere = max(refusal.held - self.held(), 0)
        budget = refusal.budget or (matched[0].info if matched else None)
        if answer.error.code == "budget_exceeded" and budget is not None:
            return BudgetExceeded(
                action=action,
                credits=credits,
                budget=budget,
                spent=budget.limit - refusal.available,
                held_elsewhere=elsewhere,
            )
        return InsufficientCredits(
            action=action, credits=credits, balance=refusal.available, held_elsewhere=elsewhere
        )

    # --- the requests -------------------------------------------------------------------------

    def _hold(self, key: _Key, credits: int | Decimal, policy: Policy) -> _Lease | None:
        """Take a hold of `credits` as a lease for `key`; ``None`` when none can be had.

        Raises:
            Refused: The service refused it.
        """
        ttl = min(float(self.settings.lease_ttl), policy.max_ttl)
        tags = _union(key)
        start = self._clock()
        info = self._client.take(credits, tags, ttl)
        return None if info is None else _Lease(key, info, tags, start, ttl)

    # --- giving back --------------------------------------------------------------------------

    def held(self) -> int | Decimal:
        """Return the credits this process holds and has not drawn."""
        with self._lock:
            leases = [*self._current.values(), *self._next.values(), *self._retired]
        return sum((max(lease.remaining, 0) for lease in leases), 0)

    def _give_back(self, leases: list[_Lease], timeout: float | None) -> bool:
        """Deliver the records drawn on `leases`, then release those with credit left.

        When the records cannot be delivered in time, the leases are kept for a later try:
        released first, they would be booked without their holds.
        """
        owed = [lease for lease in leases if lease.remaining > 0]
        if not owed:
            return True
        if not self._flush(timeout):
            with self._lock:
                self._retired.extend(owed)
            return False
        for lease in owed:
            self._client.release(lease.hold_id)
        return True

    def _due(self, now: float, *, everything: bool = False) -> list[_Lease]:
        """Take out the leases to give back now (the expired ones are simply forgotten)."""
        idle = self.settings.lease_idle
        due: list[_Lease] = []
        with self._lock:
            self._drain()
            for key, lease in list(self._current.items()):
                if now >= lease.expires:
                    del self._current[key]
                elif lease.pending == 0 and (everything or now - lease.used_at >= idle):
                    del self._current[key]
                    due.append(lease)
                elif everything:  # actions still draw on it: give back once they are done
                    del self._current[key]
                    self._retired.append(lease)
            for key, lease in list(self._next.items()):
                if now >= lease.expires:
                    del self._next[key]
                elif everything or now - lease.used_at >= idle:
                    del self._next[key]
                    due.append(lease)
            kept: list[_Lease] = []
            for lease in self._retired:
                if now >= lease.expires:
                    continue
                (kept if lease.pending else due).append(lease)
            self._retired = kept
        return due

    def _reclaim(self) -> bool:
        """Give back every lease no action draws on now; return whether any had credit."""
        due = [lease for lease in self._due(self._clock(), everything=True) if lease.remaining]
        return bool(due) and self._give_back(due, self._timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Give back every lease (after its records are delivered); the next action takes a
        new one. Return whether everything given back was."""
        return self._give_back(self._due(self._clock(), everything=True), timeout)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            if self._stopping:
                return
            self._reaper = threading.Thread(
                target=self._reap, name="flexcredits-leases", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        """Give back idle and replaced leases, until stopped or nothing is held."""
        interval = min(self.settings.lease_idle / 2, 1.0)
        while not self._stopping:
            self._wake.wait(interval)
            if self._stopping:
                break
            try:
                self._give_back(self._due(self._clock()), self._timeout)
            except Exception:  # pragma: no cover - the thread must go on
                logger.exception("flexcredits: giving back leases failed")
            with self._lock:
                if not self._current and not self._next and not self._retired:
                    self._reaper = None  # the next lease starts another
                    return

    @property
    def exit_timeout(self) -> float:
        """Seconds giving back may take at exit."""
        return min(self._timeout, 5.0)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop giving back in the background and give back every lease now."""
        self._stopping = True
        self._wake.set()
        refiller = self._refiller
        if refiller is not None and refiller is not threading.current_thread():
            # a block being taken is given back by the refiller itself, before this returns
            self._refills.put(None)
            refiller.join(self.exit_timeout if timeout is None else timeout)
        if self._ticking is not None:
            remove_tick(self._ticking)
            self._ticking = None
        return self._give_back(
            self._due(self._clock(), everything=True),
            self.exit_timeout if timeout is None else timeout,
        )

    # --- fork (called by `flexcredits_sdk._process`) --------------------------------------------

    def before_fork(self) -> None:
        """Nothing to hold: the child starts with no leases and new locks."""

    def after_fork_in_parent(self) -> None:
        """The parent keeps its leases."""

    def after_fork_in_child(self) -> None:
        """Forget the parent's leases (they are the parent's to use and give back)."""
        self._policy_lock = threading.Lock()
        self._fresh()

    # --- what is held -------------------------------------------------------------------------

    def leases(self) -> list[dict[str, Any]]:
        """Return this process's leases: budgets, tags, hold id, credits, remaining, and the
        seconds each may still be drawn on."""
        now = self._clock()
        with self._lock:
            nexts = list(self._next.values())
            return [
                {
                    "budgets": [budget.id for budget in lease.key],
                    "tags": dict(lease.tags),
                    "hold_id": lease.hold_id,
                    "credits": lease.credits,
                    "remaining": lease.remaining,
                    "usable_for": max(0.0, lease.usable_until - now),
                    "next": lease in nexts,
                }
                for lease in [*self._current.values(), *nexts]
            ]

    def stats(self) -> dict[str, Any]:
        """Return the round trips made (holds asked, released, policy fetched) and what is
        held."""
        counts: dict[str, Any] = {**self._client.counts, "refused": self._refused}
        counts["round_trips"] = counts["holds"] + counts["released"] + counts["policy_fetches"]
        counts["held"] = self.held()
        counts["leases"] = len(self._current) + len(self._next)
        return counts


def _union(matched: tuple[Budget, ...]) -> dict[str, str]:
    """Return the tags of a hold that the service matches to the same budgets."""
    tags: dict[str, str] = {}
    for budget in matched:
        tags.update(budget.items)
    return tags
