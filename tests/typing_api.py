"""Type-checked by `mypy --strict` (``make typecheck``), never run: the public API's typing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import flexcredits_sdk as fc

meter = fc.Meter(wallet=fc.OfflineWallet())


@meter.metered_action
def plain(a: int, b: str = "x") -> str:
    return b * a


@meter.metered_action(name="slots", units=2, tags={"agent": "fs"})
async def coro(day: str) -> list[str]:
    return [day]


@fc.metered_action
def gen(n: int) -> Iterator[int]:
    yield from range(n)


@fc.metered_action(action_type="custom")
async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


text: str = plain(2, b="y")
slots = coro("mon")
numbers: Iterator[int] = gen(3)
stream: AsyncIterator[int] = agen(3)

with fc.tags(team="a"), fc.conversation("c") as cid, meter.action("block") as act:
    conversation_id: str = cid
    act.tag(topic="t")
    act.units = 3
    handle: fc.Action | None = fc.current_action()

record: fc.UsageRecord | None = act.record
balance: fc.Balance = fc.OfflineWallet().balance()
rows: list[fc.UsageRow] = fc.OfflineWallet().usage(group_by=["department"])
card: fc.RateCard = fc.RateCard.agentforce()
stats: fc.MeterStats = meter.stats()
