"""Writes to the wallet registry: register a wallet, change one. Each write and its audit entry commit together;
the actor is the caller (an API key's name). Indexing of a new wallet starts from its start block: the watchers
see the registry change at their next poll (`app.indexer.registry_changes`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import NotFound, SettleError
from app.indexer import make_rpc
from app.persistence import audit
from app.persistence import wallets_repo as repo
from app.settings import ChainConfig, Settings
from app.wallet_book import RegisteredWallet, audit_entry, forget, wallet_book
from chains.balances import native_balance
from chains.errors import ChainError
from wallets import Address, Segregation, WalletKind

API_SOURCE = "api"
CHANGEABLE = ("label", "kind", "segregation", "active")


class WalletExists(SettleError):
    status_code = 409
    title = "Wallet already registered"


async def register_wallet(settings: Settings, engine: AsyncEngine, *, chain_id: int, address: Address, label: str,
                          kind: WalletKind, segregation: Segregation, start_block: int | None,
                          actor: str) -> RegisteredWallet:
    """Register a wallet (active). Raises WalletExists for a (chain, address) already registered, config
    wallets included."""
    await wallet_book(settings, engine)  # the config wallets are in, so registering one of them is a conflict
    now = datetime.now(UTC)
    row = {"chain_id": chain_id, "address": address, "label": label, "kind": kind.value,
           "segregation": segregation.value, "start_block": start_block, "active": True, "source": API_SOURCE,
           "revision": 1, "created_at": now, "created_by": actor, "updated_at": now}
    try:
        async with engine.begin() as conn:
            stored = await repo.add(conn, row)
            await audit.append(conn, at=now, **audit_entry(actor, "wallet.registered", stored))
    except IntegrityError:
        raise WalletExists(f"wallet {address} is already registered on chain {chain_id}") from None
    forget(engine)
    return RegisteredWallet.from_row(stored)


async def change_wallet(engine: AsyncEngine, wallet_id: int, changes: dict[str, Any], *,
                        actor: str) -> RegisteredWallet:
    """Set some of label, kind, segregation, active. Nothing is written (or audited) when nothing differs."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        before = await repo.get(conn, wallet_id)
        if before is None:
            raise NotFound(f"wallet {wallet_id} not found")
        values = {k: v.value if isinstance(v, WalletKind | Segregation) else v for k, v in changes.items()
                  if k in CHANGEABLE}
        values = {k: v for k, v in values.items() if before[k] != v}
        if not values:
            return RegisteredWallet.from_row(before)
        after = await repo.change(conn, wallet_id, values, at=now)
        await audit.append(conn, at=now, **audit_entry(actor, "wallet.changed", after, before))
    forget(engine)
    return RegisteredWallet.from_row(after)


async def gas_balance(chain: ChainConfig, address: str) -> tuple[int | None, str | None]:
    """The wallet's native balance at the latest block, in wei, or (None, why) when the chain's RPC fails."""
    rpc = make_rpc(chain, interactive=True)
    try:
        return await native_balance(rpc, address), None
    except ChainError as exc:
        return None, str(exc)
    except (TypeError, ValueError) as exc:  # a reply that is not a hex quantity
        return None, f"malformed eth_getBalance reply: {exc}"
    finally:
        await rpc.close()
