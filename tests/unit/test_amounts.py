"""Exact decimal <-> base-unit conversions (property-tested)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.settlement.amounts import MAX_UINT256, format_units, parse_units


@given(st.integers(min_value=0, max_value=MAX_UINT256), st.integers(min_value=0, max_value=30))
def test_format_then_parse_is_the_identity(value: int, decimals: int) -> None:
    assert parse_units(format_units(value, decimals), decimals) == value


@pytest.mark.parametrize(("value", "decimals", "text"), [
    (1_500_000, 6, "1.5"), (1, 6, "0.000001"), (0, 18, "0"), (10**18, 18, "1"), (MAX_UINT256, 0, str(MAX_UINT256)),
    (-5, 2, "-0.05"),
])
def test_format_units(value: int, decimals: int, text: str) -> None:
    assert format_units(value, decimals) == text


@pytest.mark.parametrize(("text", "reason"), [
    ("1.0000001", "decimal places"), ("-1", "non-negative"), ("1e6", "non-negative"), ("", "decimal string"),
    (" 1", "decimal string"), ("1.", "non-negative"), (str(MAX_UINT256 + 1), "2**256-1"), ("1,5", "non-negative"),
    # int() and str.isdigit() take Unicode digits: a superscript, Arabic-Indic and full-width digits are not amounts
    ("\u00b2", "non-negative"), ("\u0661\u0662.\u0665", "non-negative"), ("1.\u0665", "non-negative"),
    ("\uff11", "non-negative"), ("1_000", "non-negative"),
])
def test_parse_units_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_units(text, 6)


def test_the_recon_policy_parses_its_token_unit_thresholds_as_ascii_decimals() -> None:
    from app.reconciler import policy_for
    from app.settings import Settings

    def settings(value: str) -> Settings:
        return Settings(chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
                        tokens=[{"chain": "eth", "address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                                 "symbol": "USDC", "decimals": 6}],
                        recon={"tolerance": {"USDC": value}, "dust": {"USDC": value}})  # type: ignore[arg-type]

    policy = policy_for(settings("0.01"))
    assert dict(policy.tolerance) == dict(policy.dust) == {(1, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"): 10_000}
    for value in ("\u0660.\u0660\u0661", "\u00b2", "\uff10.01"):
        with pytest.raises(ValueError, match="non-negative decimal string"):
            policy_for(settings(value))
