"""Context that follows the code: tags, the conversation, and the action being metered.

All three live in `contextvars`, so they nest, the inner value wins, and asyncio tasks inherit
what was set when they were created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._records import new_id
from ._validate import MAX_TAGS, check_name, check_tags
from ._wrap import scoped

if TYPE_CHECKING:
    from ._action import Action

__all__ = ["conversation", "current_action", "current_conversation", "current_tags", "tags"]

F = TypeVar("F", bound=Callable[..., Any])

_EMPTY: dict[str, str] = {}
TAGS: ContextVar[dict[str, str]] = ContextVar("flexcredits_tags", default=_EMPTY)
CONVERSATION: ContextVar[str | None] = ContextVar("flexcredits_conversation", default=None)
CURRENT: ContextVar[Action | None] = ContextVar("flexcredits_current_action", default=None)


def current_action() -> Action | None:
    """Return the handle of the action being metered here, or ``None`` outside any action.

    Inside a metered function the body can add tags or change the units::

        @fc.metered_action
        def get_time_slots(days):
            fc.current_action().units = len(days)
    """
    return CURRENT.get()


def current_tags() -> Mapping[str, str]:
    """Return the tags set by the enclosing `tags` scopes (a read-only copy)."""
    return dict(TAGS.get())


def current_conversation() -> str | None:
    """Return the id of the enclosing `conversation`, or ``None``."""
    return CONVERSATION.get()


class _Scope:
    """A context variable set for a ``with`` block, an ``async with`` block or a function."""

    __slots__ = ("_tokens",)
    _var: ContextVar[Any]

    def __init__(self) -> None:
        self._tokens: list[Token[Any]] = []

    def _value(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        value = self._value()
        self._tokens.append(self._var.set(value))
        return value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._var.reset(self._tokens.pop())

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """Use the scope as a decorator: it applies around every call of `func`."""
        return scoped(func, self._var, self._value)


class tags(_Scope):
    """Tag every action in a block, or in every call of a function.

    Scopes nest; an inner value for the same key wins. Usable as ``with``, ``async with`` and as
    a decorator (on plain, async and generator functions).

    Args:
        **values: Tag keys and values, both strings.

    Raises:
        ConfigurationError: A key or value is not a short string, or there would be too many tags.
    """

    __slots__ = ("_values",)
    _var = TAGS

    def __init__(self, **values: str) -> None:
        super().__init__()
        self._values = check_tags(values)

    def _value(self) -> dict[str, str]:
        outer = TAGS.get()
        if not outer:
            return self._values
        merged = {**outer, **self._values}
        if len(merged) > MAX_TAGS:
            check_tags(self._values, base=outer)
        return merged

    def __enter__(self) -> dict[str, str]:
        super().__enter__()
        return dict(TAGS.get())


class conversation(_Scope):
    """Mark every action in a block, or in every call of a function, as one conversation.

    Args:
        id: The conversation's id, e.g. a case or ticket number; a new UUIDv7 when omitted
            (a fresh one for every entry of the scope).

    ``with fc.conversation() as cid:`` gives the id.

    Raises:
        ConfigurationError: `id` is empty or not a string.
    """

    __slots__ = ("_id",)
    _var = CONVERSATION

    def __init__(self, id: str | None = None) -> None:
        super().__init__()
        self._id = None if id is None else check_name(id, "conversation id")

    def _value(self) -> str:
        return new_id() if self._id is None else self._id

    def __enter__(self) -> str:
        value: str = super().__enter__()
        return value
