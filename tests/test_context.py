"""Tags and conversations: nesting, decorators on every kind of function, asyncio tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import flexcredits_sdk as fc


def test_tags_nest_and_the_inner_value_wins() -> None:
    assert fc.current_tags() == {}
    with fc.tags(team="a", region="eu") as outer:
        assert outer == {"team": "a", "region": "eu"}
        with fc.tags(team="b"):
            assert fc.current_tags() == {"team": "b", "region": "eu"}
        assert fc.current_tags() == {"team": "a", "region": "eu"}
    assert fc.current_tags() == {}


def test_conversation_ids() -> None:
    with fc.conversation("case-1") as cid:
        assert cid == fc.current_conversation() == "case-1"
        with fc.conversation() as inner:
            assert inner != "case-1"
            assert len(inner) == 36
        assert fc.current_conversation() == "case-1"
    assert fc.current_conversation() is None
    scope = fc.conversation()
    with scope as first:
        pass
    with scope as second:
        pass
    assert first != second


def test_scopes_are_reentrant() -> None:
    scope = fc.tags(k="v")
    with scope, scope:
        assert fc.current_tags() == {"k": "v"}
    assert fc.current_tags() == {}


async def test_scopes_decorate_every_kind_of_function() -> None:
    @fc.tags(layer="sync")
    def plain() -> dict[str, str]:
        return dict(fc.current_tags())

    @fc.conversation("conv-async")
    async def coro() -> str | None:
        await asyncio.sleep(0)
        return fc.current_conversation()

    @fc.tags(layer="gen")
    def gen() -> Iterator[dict[str, str]]:
        yield dict(fc.current_tags())
        yield dict(fc.current_tags())

    @fc.tags(layer="agen")
    async def agen() -> AsyncIterator[dict[str, str]]:
        yield dict(fc.current_tags())

    assert plain() == {"layer": "sync"}
    assert await coro() == "conv-async"
    items = gen()
    assert next(items) == {"layer": "gen"}
    assert fc.current_tags() == {}  # nothing leaks between items
    assert next(items) == {"layer": "gen"}
    assert [t async for t in agen()] == [{"layer": "agen"}]
    assert fc.current_tags() == {}


async def test_async_with_and_tasks() -> None:
    async def read() -> dict[str, str]:
        await asyncio.sleep(0)
        return dict(fc.current_tags())

    async with fc.tags(team="x"):
        task = asyncio.create_task(read())
    assert fc.current_tags() == {}
    assert await task == {"team": "x"}


def test_records_carry_the_context() -> None:
    wallet = fc.OfflineWallet()
    meter = fc.Meter(wallet=wallet)
    with fc.tags(department="service"), fc.conversation("case-4711"), meter.action("a"):
        pass
    record = next(iter(wallet.records()))
    assert record.tags == {"department": "service"}
    assert record.conversation_id == "case-4711"


def test_current_action_outside_is_none() -> None:
    assert fc.current_action() is None
    with pytest.raises(fc.ConfigurationError):
        fc.tags(**{"k": "v" * 300})
