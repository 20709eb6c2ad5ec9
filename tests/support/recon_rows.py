"""Rows written straight into the tables for reconciler tests that need no chain: one USDC deposit wallet on
chain 1 (a node that is never asked), finalized transfers into it, and deposit records for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.settings import Settings

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
WHEN = datetime(2026, 11, 26, 9, tzinfo=UTC)


@dataclass(frozen=True)
class ReconRows:
    """Factories for one deposit wallet `dep` receiving from `customer`."""

    dep: str
    customer: str

    def settings(self, tmp_path: Path, url: str) -> Settings:
        return Settings(database_url=url, data_dir=tmp_path, chains=[
            {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
            tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}],
            wallets=[{"address": self.dep, "label": "d", "kind": "deposit",
                      "segregation": "customer"}])  # type: ignore[list-item]

    def transfer(self, i: int, amount: int) -> dict:
        return {"id": i, "chain_id": 1, "token": USDC, "sender": self.customer, "recipient": self.dep,
                "amount": amount, "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i,
                "block_hash": f"0x{i:064x}", "block_time": WHEN, "state": "finalized", "seen_at": WHEN,
                "confirmed_at": WHEN, "finalized_at": WHEN}

    def record(self, ext: str, amount: int, created: datetime) -> dict:
        return {"source": "core", "external_id": ext, "version": 1, "kind": "deposit", "chain_id": 1, "token": USDC,
                "amount": amount, "wallet": self.dep, "counterparty": None, "tx_hash": None, "log_index": None,
                "reference": None, "segregation": "customer", "status": "completed", "created_at": created,
                "expected_by": None, "ingested_at": created}
