"""Test helpers: a devnet (anvil + deployed tokens), settings factories, canonical logs vs indexed rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.indexer import index_chain
from app.persistence.tables import Transfer
from app.settings import Settings
from chains.decoding import TRANSFER_TOPIC
from chains.devnet import Anvil, BatchSender, Token
from wallets import Address, to_checksum


def address_for(label: str) -> Address:
    """A deterministic address that no one holds a key for (tests impersonate it)."""
    return to_checksum("0x" + keccak(text=label)[-20:].hex())


@dataclass
class Devnet:
    anvil: Anvil
    tokens: dict[str, Token]
    batch: BatchSender

    @property
    def chain_id(self) -> int:
        return self.anvil.chain_id

    @contextmanager
    def isolated(self) -> Iterator[Devnet]:
        snap = self.anvil.snapshot()
        try:
            yield self
        finally:
            self.anvil.set_automine(True)
            self.anvil.revert(snap)

    def chain_config(self, name: str, **overrides: Any) -> dict[str, Any]:
        return {"name": name, "chain_id": self.chain_id, "rpc_urls": [self.anvil.url], "start_block": 0,
                "poll_interval": 0.05, "confirmations": 2, "finality": 6, "max_getlogs_range": 500,
                "request_timeout": 5, **overrides}

    def token_configs(self, name: str) -> list[dict[str, Any]]:
        return [{"chain": name, "address": t.address, "symbol": kind.upper(), "decimals": t.decimals()}
                for kind, t in self.tokens.items()]

    def canonical_transfers(self, wallets: Sequence[str], start: int = 0) -> set[tuple]:
        """Transfers of our tokens touching `wallets` on the canonical chain, straight from eth_getLogs."""
        ours = {w.lower() for w in wallets}
        logs = self.anvil.get_logs({"fromBlock": hex(start), "toBlock": "latest",
                                    "address": [t.address for t in self.tokens.values()],
                                    "topics": [TRANSFER_TOPIC]})
        out = set()
        for log in logs:
            sender, recipient = "0x" + log["topics"][1][-40:], "0x" + log["topics"][2][-40:]
            if sender in ours or recipient in ours:
                out.add((log["transactionHash"], int(log["logIndex"], 16), log["blockHash"],
                         to_checksum(log["address"]), to_checksum(sender), to_checksum(recipient),
                         int(log["data"], 16)))
        return out


def make_settings(tmp_path: Path, database_url: str, chains: list[dict], tokens: list[dict],
                  wallets: list[dict]) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data", chains=chains, tokens=tokens,
                    wallets=wallets)  # type: ignore[arg-type]


def wallet(address: str, label: str = "w", kind: str = "deposit", segregation: str = "customer",
           chain: str = "*", **extra: Any) -> dict[str, Any]:
    return {"chain": chain, "address": address, "label": label, "kind": kind, "segregation": segregation, **extra}


async def index_once(settings: Settings, engine: AsyncEngine, name: str | None = None) -> None:
    for chain in settings.chains:
        if name is None or chain.name == name:
            await index_chain(settings, engine, chain, once=True)


async def indexed(engine: AsyncEngine, chain_id: int, *, live: bool = True) -> set[tuple]:
    T = Transfer.__table__
    stmt = select(T).where(T.c.chain_id == chain_id)
    if live:
        stmt = stmt.where(T.c.state != "orphaned")
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    return {(r["tx_hash"], r["log_index"], r["block_hash"], r["token"], r["sender"], r["recipient"], r["amount"])
            for r in rows}


async def rows(engine: AsyncEngine, chain_id: int) -> list[dict]:
    T = Transfer.__table__
    async with engine.connect() as conn:
        result = await conn.execute(select(T).where(T.c.chain_id == chain_id).order_by(T.c.id))
        return [dict(r) for r in result.mappings()]


async def balance_differences(settings: Settings, engine: AsyncEngine) -> dict[tuple[str, str, str], int]:
    """Run the balance check on every chain; {(chain, wallet, token symbol): balanceOf - indexed}."""
    from app.balance_check import check_chain

    out = {}
    for chain in settings.chains:
        for r in await check_chain(settings, engine, chain):
            out[(chain.name, r.wallet, r.symbol)] = r.difference
    return out


async def assert_balances_agree(settings: Settings, engine: AsyncEngine) -> None:
    diffs = await balance_differences(settings, engine)
    assert diffs and all(d == 0 for d in diffs.values()), {k: v for k, v in diffs.items() if v}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, *, database_url: str, data_dir: Path, chains: list[dict], tokens: list[dict],
               wallets: list[dict]) -> Path:
    """A settle.toml for CLI tests (tomllib only reads)."""
    lines = [f"database_url = {_toml_value(database_url)}", f"data_dir = {_toml_value(str(data_dir))}"]
    for section, items in (("chains", chains), ("tokens", tokens), ("wallets", wallets)):
        for item in items:
            lines.append(f"\n[[{section}]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def bearer(engine: AsyncEngine, *scopes: str, name: str | None = None) -> dict[str, str]:
    """Headers with a new API key holding these scopes (all of them if none are named)."""
    import secrets

    from app.access import Scope, create_key

    key = await create_key(engine, name=name or f"test-{secrets.token_hex(4)}",
                           scopes=[Scope(s) for s in scopes] or list(Scope), actor="test")
    return {"Authorization": f"Bearer {key}"}
