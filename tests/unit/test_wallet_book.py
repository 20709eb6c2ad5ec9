"""The WalletBook: by id and by chain; inactive wallets are not followed but stay ours."""

from __future__ import annotations

from datetime import UTC, datetime

from app.wallet_book import RegisteredWallet, WalletBook
from wallets import Address, Segregation, WalletKind

WHEN = datetime(2026, 11, 27, tzinfo=UTC)


def _wallet(wallet_id: int, chain_id: int, address: str, *, active: bool = True) -> RegisteredWallet:
    return RegisteredWallet(id=wallet_id, chain_id=chain_id, address=Address(address), label=f"w{wallet_id}",
                            kind=WalletKind.DEPOSIT, segregation=Segregation.CUSTOMER, start_block=None,
                            active=active, source="api", created_at=WHEN, created_by="t", updated_at=WHEN)


def test_inactive_wallets_are_listed_and_ours_but_not_followed() -> None:
    a, b, c = _wallet(1, 1, "0xA"), _wallet(2, 1, "0xB", active=False), _wallet(3, 2, "0xA")
    book = WalletBook([a, b, c], (3, 3))
    assert book.get(2) is b and book.get(9) is None and book.all() == [a, b, c]
    assert book.wallets_on(1) == [a, b] and book.active_on(1) == [a] and book.active_on(3) == []
    assert book.our_wallets() == {(1, "0xA"), (1, "0xB"), (2, "0xA")}
