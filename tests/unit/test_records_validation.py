"""Record validation never crashes on a wrong JSON type: every field, every odd value, a 4xx naming the field."""

from __future__ import annotations

import pytest

from app.records import RecordsRejected, validate
from app.settings import Settings

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
BASE = {"source": "core", "external_id": "a", "kind": "deposit", "chain": "eth", "token": USDC, "amount": "1.5",
        "wallet": "0x28C6c06298d514Db089934071355E5743bf21d60", "segregation": "customer", "status": "pending",
        "created_at": "2026-11-27T09:00:00Z"}
ODD = ([1], {"a": 1}, 1.5, True, -1, 2**300, "", "x" * 300)


@pytest.mark.parametrize("field", [*BASE, "counterparty", "tx_hash", "log_index", "reference", "expected_by"])
def test_an_odd_value_in_any_field_is_refused_by_name(field: str) -> None:
    settings = Settings(chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
                        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}])  # type: ignore[list-item]
    for value in ODD:
        if field == "reference" and isinstance(value, str) and len(value) <= 200:  # free text, up to 200
            continue
        with pytest.raises(RecordsRejected) as info:
            validate(settings, [{**BASE, field: value}])
        assert field in {e.field for e in info.value.errors}, (field, value, info.value.errors)


SETTINGS = Settings(chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
                    tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6}])  # type: ignore[list-item]


@pytest.mark.parametrize(("field", "value"), [
    ("amount", "\u00b2"), ("amount", "\u0661\u0662.\u0665"), ("amount", "\uff11.5"),
    ("amount_base_units", "\u00b2"), ("amount_base_units", "\u0661\u0662"), ("amount_base_units", "\uff11"),
])
def test_an_amount_in_non_ascii_digits_is_refused_by_name(field: str, value: str) -> None:
    item = {k: v for k, v in BASE.items() if k != "amount"}
    with pytest.raises(RecordsRejected) as info:
        validate(SETTINGS, [{**item, field: value}])
    assert [e.field for e in info.value.errors] == [field]


def test_a_wallet_not_registered_on_the_records_chain_is_refused_by_name() -> None:
    ours = {(1, BASE["wallet"])}
    assert validate(SETTINGS, [BASE], registered=lambda c, a: (c, a) in ours)[0]["wallet"] == BASE["wallet"]
    with pytest.raises(RecordsRejected) as info:
        validate(SETTINGS, [BASE], registered=lambda c, a: (c, a) in {(2, BASE["wallet"])})
    assert [(e.field, e.reason) for e in info.value.errors] == [("wallet", "not a registered wallet on eth")]
