"""The `stale_fork` fault: the proxy answers as a node that followed a fork which lost (see `StaleForkNode`)."""

from __future__ import annotations

import hashlib

from tests.support.rpc_faults import GET_LOGS, Fault, JsonObj, Upstream, error_reply, fixed_error, result_reply


def stale_hash(number: int) -> str:
    """The hash of block `number` on the stale fork (deterministic, never a real block's)."""
    return "0x" + hashlib.sha256(f"stale fork block {number}".encode()).hexdigest()


def _log_matches(entry: JsonObj, flt: JsonObj) -> bool:
    addresses = flt.get("address")
    if addresses:
        wanted = [addresses] if isinstance(addresses, str) else addresses
        if str(entry.get("address", "")).lower() not in {a.lower() for a in wanted}:
            return False
    topics = entry.get("topics", [])
    for i, want in enumerate(flt.get("topics") or []):
        if want is None:
            continue
        options = [want] if isinstance(want, str) else want
        if i >= len(topics) or topics[i].lower() not in {o.lower() for o in options}:
            return False
    return True


class StaleForkNode:
    """Answers as a node that followed a fork which lost: the `fault.depth` blocks from `fault.block` on are other
    blocks there (hashes `stale_hash(n)`, linked to each other, blooms that match everything), the first holding
    `fault.logs` and the others none; it does not know the canonical blocks of those heights."""

    def __init__(self, upstream: Upstream, fault: Fault) -> None:
        self._upstream = upstream
        self._first = fault.block
        self._last = fault.block + max(fault.depth, 1) - 1
        self._logs = fault.logs

    def _stale(self, number: int) -> bool:
        return self._first <= number <= self._last

    def _number_of_stale(self, block_hash: str) -> int | None:
        return next((n for n in range(self._first, self._last + 1) if stale_hash(n) == block_hash), None) \
            if self._last - self._first < 10_000 else None

    async def answer(self, item: JsonObj) -> JsonObj:
        method, params = item.get("method"), list(item.get("params") or [])
        if method == "eth_getBlockByNumber":
            number = await self._upstream.block_number(params[0] if params else "latest")
            if self._stale(number):
                return result_reply(item, await self._block(number))
            return await self._upstream.send({**item, "params": [hex(number), *params[1:]]})
        if method == "eth_getBlockByHash":
            fake = self._number_of_stale(params[0]) if params else None
            if fake is not None:
                return result_reply(item, await self._block(fake))
            real = await self._upstream.number_of_block(params[0]) if params else None
            if real is not None and self._stale(real):
                return result_reply(item, None)
            return await self._upstream.send(item)
        flt = dict(params[0]) if params and isinstance(params[0], dict) else {}
        if "blockHash" in flt:
            fake = self._number_of_stale(flt["blockHash"])
            if fake is not None:
                return result_reply(item, [e for e in await self._fake_logs(fake) if _log_matches(e, flt)])
            real = await self._upstream.number_of_block(flt["blockHash"])
            if real is not None and self._stale(real):
                return error_reply(item, fixed_error("unknown_block", GET_LOGS))
            return await self._upstream.send(item)
        reply = await self._upstream.send(item)
        first = await self._upstream.block_number(flt.get("fromBlock", "latest"))
        last = await self._upstream.block_number(flt.get("toBlock", "latest"))
        if last < self._first or first > self._last or not isinstance(reply.get("result"), list):
            return reply
        kept = [e for e in reply["result"] if not self._stale(int(e["blockNumber"], 16))]
        if first <= self._first <= last:
            kept += [e for e in await self._fake_logs(self._first) if _log_matches(e, flt)]
        kept.sort(key=lambda e: (int(e["blockNumber"], 16), int(e["logIndex"], 16)))
        return {**reply, "result": kept}

    async def _real(self, number: int) -> JsonObj:
        block: JsonObj = await self._upstream.call("eth_getBlockByNumber", [hex(number), False])
        return block

    async def _block(self, number: int) -> JsonObj | None:
        real = await self._real(number)
        if real is None:
            return None
        parent = stale_hash(number - 1) if number > self._first else real["parentHash"]
        return {**real, "hash": stale_hash(number), "parentHash": parent, "logsBloom": "0x" + "ff" * 256,
                "transactions": []}

    async def _fake_logs(self, number: int) -> list[JsonObj]:
        if number != self._first:
            return []
        real = await self._real(number)
        return [{"removed": False, "transactionIndex": "0x0", **entry, "blockNumber": hex(number),
                 "blockHash": stale_hash(number), "blockTimestamp": real.get("timestamp")} for entry in self._logs]
