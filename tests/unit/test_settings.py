"""A bad configuration fails at start with a message naming the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import load_settings

GOOD = """
[[chains]]
name = "ethereum"
chain_id = 1
rpc_urls = ["https://mainnet.example/v3/KEY0123456789abcdef", "https://backup.example"]
start_block = 17000000
confirmations = 12
finality = "tag"

[[tokens]]
chain = "ethereum"
address = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
symbol = "USDC"
decimals = 6

[[wallets]]
address = "0x28C6c06298d514Db089934071355E5743bf21d60"
label = "hot-1"
kind = "hot"
segregation = "house"
"""


def _load(tmp_path: Path, text: str, **env: str):
    path = tmp_path / "settle.toml"
    path.write_text(text)
    return load_settings(path)


def test_a_good_file_loads(tmp_path: Path) -> None:
    settings = _load(tmp_path, GOOD)
    chain = settings.chain("ethereum")
    assert chain.confirmations == 12 and chain.finality == "tag" and len(chain.urls) == 2
    assert [w.address for w in settings.wallets_on(chain)] == ["0x28C6c06298d514Db089934071355E5743bf21d60"]


def test_the_example_file_in_the_repository_loads() -> None:
    settings = load_settings(Path(__file__).parents[2] / "settle.example.toml")
    assert settings.chains and settings.tokens and settings.wallets


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_DATABASE_URL", "postgresql://u@db/settle")
    assert _load(tmp_path, GOOD).database_url == "postgresql://u@db/settle"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('chain = "ethereum"\naddress = "0xA0b8', 'chain = "polygon"\naddress = "0xA0b8'),
         "tokens[0].chain: unknown chain 'polygon'"),
        (("0x28C6c06298d514Db089934071355E5743bf21d60", "0x28C6c06298d514Db08993407135"),
         "wallets[0].address: not a 0x-prefixed 20-byte hex address"),
        (("0x28C6c06298d514Db089934071355E5743bf21d60", "0x28c6c06298d514db089934071355e5743bf21D60"),
         "wallets[0].address: bad EIP-55 checksum"),
        (('"https://backup.example"', '"not a url"'), "chains[0].rpc_urls[1]:"),
        (('"https://backup.example"', '"ftp://backup.example"'), "chains[0].rpc_urls[1]: URL scheme"),
        (('kind = "hot"', 'kind = "warm"'), "wallets[0].kind: Input should be"),
        (("decimals = 6", "decimals = 6\ncolour = 1"), "tokens[0].colour: unknown key"),
        (('finality = "tag"', 'finality = "soon"'), "chains[0].finality"),
    ],
)
def test_a_bad_file_names_the_key_and_the_problem(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD.replace(*change))
    assert expected in str(info.value)
    assert "KEY0123456789abcdef" not in str(info.value)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[[chains]\nname=")
