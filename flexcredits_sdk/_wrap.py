"""Wrapping of the four kinds of callables: plain, coroutine, generator and async generator.

The kind is chosen once, at decoration time. Generators are driven step by step so that a
context variable can be set around each resume (and never leak into the consumer's context
between items), and so that ``send``, ``throw`` and ``close`` (and their async forms) reach the
wrapped generator unchanged. The wrappers of generator functions are generator functions
themselves, so ``inspect`` classifies them as it does the original.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import ContextVar, Token
from typing import Any, Literal, TypeVar

__all__ = ["Begin", "Kind", "async_generator_wrapper", "generator_wrapper", "kind_of", "scoped"]

Kind = Literal["function", "coroutine", "generator", "async_generator"]
F = TypeVar("F", bound=Callable[..., Any])
#: Called when a generator starts: returns the value to set around each resume and the
#: callback to call once when it ends (with the exception when it failed).
Begin = Callable[[], tuple[Any, Callable[[BaseException | None], None]]]


def kind_of(func: Callable[..., Any]) -> Kind:
    """Return which of the four wrappers `func` needs."""
    if inspect.isasyncgenfunction(func):
        return "async_generator"
    if inspect.iscoroutinefunction(func):
        return "coroutine"
    if inspect.isgeneratorfunction(func):
        return "generator"
    return "function"


def generator_wrapper(
    func: Callable[..., Generator[Any, Any, Any]], var: ContextVar[Any], begin: Begin
) -> Callable[..., Generator[Any, Any, Any]]:
    """Return a generator function that re-yields `func`'s items with `var` set per resume.

    `begin` runs at the first ``next()``; its end callback runs exactly once, with ``None``
    when the generator is exhausted or closed early and with the exception when it fails.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        value, on_end = begin()
        gen = func(*args, **kwargs)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = var.set(value)
            try:
                if to_throw is None:
                    item = gen.send(to_send)
                else:
                    exc, to_throw = to_throw, None
                    item = gen.throw(exc)
            except StopIteration as stop:
                on_end(None)
                return stop.value
            except BaseException as exc:
                on_end(exc)
                raise
            finally:
                var.reset(token)
            try:
                to_send = yield item
            except GeneratorExit:
                token = var.set(value)
                try:
                    gen.close()
                except BaseException as exc:
                    on_end(exc)
                    raise
                finally:
                    var.reset(token)
                on_end(None)
                raise
            except BaseException as exc:
                to_send, to_throw = None, exc

    return functools.wraps(func)(wrapper)


def async_generator_wrapper(
    func: Callable[..., AsyncGenerator[Any, Any]], var: ContextVar[Any], begin: Begin
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """The async-generator form of `generator_wrapper` (``asend``/``athrow``/``aclose``)."""

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        value, on_end = begin()
        agen = func(*args, **kwargs)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = var.set(value)
            try:
                if to_throw is None:
                    item = await agen.asend(to_send)
                else:
                    exc, to_throw = to_throw, None
                    item = await agen.athrow(exc)
            except StopAsyncIteration:
                on_end(None)
                return
            except BaseException as exc:
                on_end(exc)
                raise
            finally:
                var.reset(token)
            try:
                to_send = yield item
            except GeneratorExit:
                token = var.set(value)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    on_end(exc)
                    raise
                finally:
                    var.reset(token)
                on_end(None)
                raise
            except BaseException as exc:
                to_send, to_throw = None, exc

    return functools.wraps(func)(wrapper)


def _ignore(_: BaseException | None) -> None:
    return None


def scoped(func: F, var: ContextVar[Any], make: Callable[[], Any]) -> F:
    """Wrap `func` so that `var` is set to ``make()`` while it runs, whatever its kind."""
    kind = kind_of(func)
    if kind == "generator":
        return generator_wrapper(func, var, lambda: (make(), _ignore))  # type: ignore[return-value]
    if kind == "async_generator":
        return async_generator_wrapper(func, var, lambda: (make(), _ignore))  # type: ignore[return-value]
    wrapper: Callable[..., Any]
    if kind == "coroutine":

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token: Token[Any] = var.set(make())
            try:
                return await func(*args, **kwargs)
            finally:
                var.reset(token)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token: Token[Any] = var.set(make())
            try:
                return func(*args, **kwargs)
            finally:
                var.reset(token)

    return functools.wraps(func)(wrapper)  # type: ignore[return-value]
