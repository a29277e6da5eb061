"""The SDK and the life of its process: fork, and every way a process ends.

This is the one place that hooks into them:

* ``os.fork()`` (directly, or by gunicorn, uwsgi, ``multiprocessing``): before the fork, every
  registered object waits until no other thread is inside it (meters, wallets, then
  exporters, which also keep every thread out of their outbox files, so no transaction is
  open when the process is copied); afterwards the parent goes on, and in the child each
  object starts afresh from a state no other thread was changing.
* Interpreter exit: an ``atexit`` hook shuts every exporter down (within ``exit_timeout``).
* ``multiprocessing`` children started by fork end with ``os._exit`` once their target
  returns, which skips ``atexit``: a finalizer that multiprocessing runs there shuts the
  exporters down instead. (Spawned children end through ``sys.exit``, so ``atexit`` runs.)
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import weakref
from typing import Protocol

__all__ = ["ForkAware", "LockedAcrossFork", "at_exit", "at_fork"]

logger = logging.getLogger("flexcredits_sdk")


class ForkAware(Protocol):
    """What `at_fork` calls, in the forking thread."""

    def before_fork(self) -> None: ...

    def after_fork_in_parent(self) -> None: ...

    def after_fork_in_child(self) -> None: ...


class Closing(Protocol):
    """What `at_exit` calls."""

    @property
    def exit_timeout(self) -> float: ...

    def shutdown(self, timeout: float | None = None) -> bool: ...


#: Objects called at fork, by rank: lower ranks are held first and let go last.
_FORK_AWARE: tuple[weakref.WeakSet[ForkAware], ...] = tuple(weakref.WeakSet() for _ in range(3))
_HELD: list[ForkAware] = []  # between a fork's before and after hooks
_CLOSING: weakref.WeakSet[Closing] = weakref.WeakSet()

METERS, WALLETS, EXPORTERS = 0, 1, 2


def at_fork(obj: ForkAware, rank: int) -> None:
    """Call `obj` around every fork of this process (see the module's docs)."""
    _FORK_AWARE[rank].add(obj)


def at_exit(obj: Closing) -> None:
    """Shut `obj` down when the process ends (``atexit``, multiprocessing's finalizers)."""
    _CLOSING.add(obj)


class LockedAcrossFork:
    """For an object whose state is guarded by ``self._lock``: the lock is held across a
    fork, so the child never inherits it held by a thread that does not exist there."""

    _lock: threading.Lock

    def before_fork(self) -> None:
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        self._lock.release()


def _before_fork() -> None:
    _HELD.clear()
    for objects in _FORK_AWARE:  # by rank, each rank listed when its turn comes: an object of
        for obj in list(objects):  # a lower rank may finish making one of a higher rank
            obj.before_fork()
            _HELD.append(obj)


def _after_fork_in_parent() -> None:
    for obj in reversed(_HELD):
        obj.after_fork_in_parent()
    _HELD.clear()


def _after_fork_in_child() -> None:
    for obj in reversed(_HELD):
        obj.after_fork_in_child()
    _HELD.clear()


def _shutdown_all() -> None:
    for obj in list(_CLOSING):
        try:
            obj.shutdown(obj.exit_timeout)
        except Exception:  # pragma: no cover - never fail interpreter exit
            logger.exception("flexcredits shutdown at exit failed")


class _Multiprocessing:
    """multiprocessing calls `started` in each child it forks, after clearing the finalizers
    the parent had; it runs the child's finalizers before ``os._exit``."""

    def started(self) -> None:
        multiprocessing.util.Finalize(None, _shutdown_all, exitpriority=0)


_MULTIPROCESSING = _Multiprocessing()
multiprocessing.util.register_after_fork(_MULTIPROCESSING, _Multiprocessing.started)
if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
atexit.register(_shutdown_all)
