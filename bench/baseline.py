"""The baseline the indexer is compared with: plain eth_getLogs over the same range, with the same filter and
chunk size, one request in flight, JSON decoded and nothing else done with the logs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider

from chains.logs import LogFilter


@dataclass(frozen=True)
class RawResult:
    client: str
    logs: int
    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.logs / self.seconds if self.seconds > 0 else 0.0


def _chunks(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(last, lo + size - 1)) for lo in range(first, last + 1, size)]


def _params(flt: LogFilter, lo: int, hi: int) -> list[dict[str, Any]]:
    return [{**q, "fromBlock": hex(lo), "toBlock": hex(hi)} for q in flt.queries()]


async def raw_aiohttp(url: str, flt: LogFilter, first: int, last: int, chunk: int) -> RawResult:
    """eth_getLogs through a bare aiohttp session (what the indexer's transport costs at least)."""
    count = requests = 0
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for lo, hi in _chunks(first, last, chunk):
            for params in _params(flt, lo, hi):
                body = {"jsonrpc": "2.0", "id": requests, "method": "eth_getLogs", "params": [params]}
                async with session.post(url, json=body) as resp:
                    reply = json.loads(await resp.read())
                count += len(reply["result"])
                requests += 1
        seconds = time.perf_counter() - started
    return RawResult("aiohttp", count, requests, seconds)


async def raw_web3(url: str, flt: LogFilter, first: int, last: int, chunk: int) -> RawResult:
    """eth_getLogs through web3's AsyncHTTPProvider.make_request (the indexer's own transport, no formatting)."""
    provider = AsyncHTTPProvider(url, exception_retry_configuration=None)
    count = requests = 0
    try:
        started = time.perf_counter()
        for lo, hi in _chunks(first, last, chunk):
            for params in _params(flt, lo, hi):
                reply = await provider.make_request("eth_getLogs", [params])  # type: ignore[arg-type]
                count += len(reply["result"])
                requests += 1
        seconds = time.perf_counter() - started
    finally:
        await provider.disconnect()
    return RawResult("web3 make_request", count, requests, seconds)
