"""Blocking Redis reads outlast the client's socket timeout (redis-py 8 made it 5 s by default,
the length of the channel layer's BZPOPMIN: an idle receive then raised TimeoutError)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from enigma_site.redis import get_async_redis, get_redis

pytestmark = pytest.mark.slow

QUIET_S = 7.0  # longer than both the 5 s BZPOPMIN and redis-py 8's default socket timeout


async def _layer_receive_waits_quietly() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel("quiet.")
    with pytest.raises(TimeoutError):  # ours below, not redis.exceptions.TimeoutError
        await asyncio.wait_for(layer.receive(channel), QUIET_S)


async def _async_client_blocks_past_5_s() -> None:
    assert await get_async_redis().blpop(["enigma:test:never"], timeout=6) is None


@pytest.mark.asyncio
async def test_idle_channel_layer_receive_and_blocking_reads_do_not_time_out() -> None:
    await asyncio.gather(
        _layer_receive_waits_quietly(),
        _async_client_blocks_past_5_s(),
        asyncio.to_thread(lambda: get_redis().blpop(["enigma:test:never"], timeout=6)),
    )
