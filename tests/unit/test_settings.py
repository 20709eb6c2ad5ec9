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


# ---- errors read as a person wrote them ---------------------------------------------------------------------
@pytest.mark.parametrize(("line", "key", "message"), [
    ('confirmations = 12', 'confirmations = "soon"', 'chains[0].confirmations: must be a whole number >= 0 or "safe"'),
    ('confirmations = 12', 'confirmations = -1', 'chains[0].confirmations: must be a whole number >= 0 or "safe"'),
    ('confirmations = 12', 'confirmations = true', 'chains[0].confirmations: must be a whole number >= 0 or "safe"'),
    ('confirmations = 12', 'confirmations = 1.5', 'chains[0].confirmations: must be a whole number >= 0 or "safe"'),
    ('finality = "tag"', 'finality = "soon"', 'chains[0].finality: must be a whole number >= 0 or "tag"'),
    ('finality = "tag"', 'finality = -3', 'chains[0].finality: must be a whole number >= 0 or "tag"'),
])
def test_a_union_field_gets_one_message_not_one_per_branch(tmp_path: Path, line: str, key: str,
                                                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD.replace(line, key))
    lines = str(info.value).splitlines()
    assert lines[1:] == [f"  {message}"], lines


def test_unions_still_accept_both_branches(tmp_path: Path) -> None:
    chain = _load(tmp_path, GOOD.replace('confirmations = 12', 'confirmations = "safe"').replace(
        'finality = "tag"', 'finality = 0')).chain("ethereum")
    assert (chain.confirmations, chain.finality) == ("safe", 0)


def test_a_pattern_is_quoted_whole(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, GOOD.replace('name = "ethereum"', 'name = "Ethereum Main"'))
    assert "chains[0].name: String should match pattern '^[a-z0-9][a-z0-9_-]*$'" in str(info.value)


def test_a_missing_file_is_named_with_the_path_that_was_looked_for(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as explicit:
        load_settings(Path("nope.toml"))
    assert str(tmp_path / "nope.toml") in str(explicit.value)
    monkeypatch.setenv("SETTLE_CONFIG_FILE", str(tmp_path / "from-env.toml"))
    with pytest.raises(ConfigError) as from_env:  # named on purpose: not silently the defaults
        load_settings()
    assert str(tmp_path / "from-env.toml") in str(from_env.value) and "SETTLE_CONFIG_FILE" in str(from_env.value)
    monkeypatch.delenv("SETTLE_CONFIG_FILE")
    settings = load_settings()  # nothing named: the defaults, and where the file was looked for
    assert settings.chains == [] and str(tmp_path / "settle.toml") in settings.config_source()
    assert "no configuration file" in settings.config_source()
    (tmp_path / "settle.toml").write_text(GOOD)
    assert load_settings().config_source() == str(tmp_path / "settle.toml")


# ---- the recon policy is checked when settings load -----------------------------------------------------------
TWO_CHAINS = GOOD + """
[[chains]]
name = "bsc"
chain_id = 56
rpc_urls = ["https://bsc.example"]

[[tokens]]
chain = "bsc"
address = "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"
symbol = "USDC"
decimals = 18
"""


@pytest.mark.parametrize(("recon", "expected"), [
    ('tolerance = {DAI = "0.01"}', "recon.tolerance.DAI: unknown token symbol (configured: USDC)"),
    ('dust = {USDT = "0.10"}', "recon.dust.USDT: unknown token symbol"),
    ('dust = {USDC = "0.0000001"}', "recon.dust.USDC: has 7 decimal places; USDC on ethereum has 6"),
    ('tolerance = {USDC = "-1"}', "recon.tolerance.USDC: must be a non-negative decimal string"),
    ('tolerance = {USDC = 0.01}', 'recon.tolerance.USDC: must be a decimal string such as "0.01" (quoted)'),
    ('tolerance = {USDC = "1e3"}', "recon.tolerance.USDC: must be a non-negative decimal string"),
    ('match_finalized_only = ["ethereum", "polygon"]',
     "recon.match_finalized_only[1]: unknown chain 'polygon' (configured: ['bsc', 'ethereum'])"),
    ("sla_hours = {urgent = 1}", "recon.sla_hours.urgent: unknown severity (one of low, medium, high, critical)"),
])
def test_a_bad_recon_policy_fails_at_load_naming_the_key(tmp_path: Path, recon: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, TWO_CHAINS + f"\n[recon]\n{recon}\n")
    assert expected in str(info.value)


def test_the_recon_policy_is_parsed_once_into_base_units_per_token(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO_CHAINS + '\n[recon]\ntolerance = {USDC = "0.01"}\ndust = {USDC = "0.000001"}\n'
                                            'match_finalized_only = ["bsc"]\n')
    thresholds = settings.recon_thresholds
    assert thresholds is settings.recon_thresholds  # cached: not parsed again per pass
    assert thresholds.tolerance == {(1, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"): 10_000,
                                    (56, "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"): 10**16}
    assert thresholds.dust == {(1, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"): 1,
                               (56, "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"): 10**12}


def test_the_audit_head_key_is_a_secret_of_some_length(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audit.head_key: at least 16 characters"):
        _load(tmp_path, GOOD + '\n[audit]\nhead_key = "short"\n')
    settings = _load(tmp_path, GOOD + '\n[audit]\nhead_key = "0123456789abcdef-secret"\n')
    assert settings.audit.head_key is not None
    assert settings.audit.head_key.get_secret_value() == "0123456789abcdef-secret"
    assert "0123456789abcdef-secret" not in repr(settings) + str(settings)
