"""The one Settings object: a TOML file (`settle.toml`) plus `SETTLE_*` environment variables.

Nothing else in the code base reads environment variables. Environment variables override the file. A bad file
fails at start with a `ConfigError` whose message names each bad key (e.g. `tokens[1].chain`) and the problem.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.errors import ConfigError
from app.settings_rules import check_recon, one_message
from app.settlement.amounts import parse_units
from wallets import Address, InvalidAddress, Segregation, Wallet, WalletKind, to_checksum

DEFAULT_CONFIG = Path("settle.toml")
ALL_CHAINS = "*"


def _checksummed(value: object) -> Address:
    try:
        return to_checksum(value)
    except InvalidAddress as exc:
        raise PydanticCustomError("address", str(exc)) from None


ChecksumAddress = Annotated[str, Field(description="EVM address; mixed case must carry a valid EIP-55 checksum")]


Confirmations = Annotated[int | Literal["safe"], one_message('must be a whole number >= 0 or "safe"', depth=True)]
Finality = Annotated[int | Literal["tag"], one_message('must be a whole number >= 0 or "tag"', depth=True)]
TokenUnits = Annotated[str, one_message('must be a decimal string such as "0.01" (quoted)')]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainConfig(_Strict):
    """One EVM chain to watch."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    chain_id: PositiveInt
    rpc_urls: list[AnyHttpUrl] = Field(min_length=1)
    start_block: int = Field(0, ge=0)
    poll_interval: PositiveFloat = 2.0
    confirmations: Confirmations = Field(12, description="depth for `confirmed`, or the `safe` tag")
    finality: Finality = Field("tag", description="`tag` for the node's `finalized`, or a depth")
    max_getlogs_range: PositiveInt = 2000
    mode: Literal["auto", "wallets", "scan"] = "auto"
    scan_threshold: PositiveInt = Field(200, description="auto mode scans token-wide above this many wallets")
    failover_lag: int = Field(3, ge=0, description="blocks to stay behind a node we failed over to")
    request_timeout: PositiveFloat = 15.0
    max_retries: PositiveInt = 8

    @property
    def urls(self) -> list[str]:
        return [str(u) for u in self.rpc_urls]


class TokenConfig(_Strict):
    """A token registered by contract address on one chain (never by symbol: USDC.e is not USDC)."""

    chain: str
    address: ChecksumAddress
    symbol: str = Field(min_length=1, max_length=16)
    decimals: int = Field(ge=0, le=77)
    start_block: int | None = Field(None, ge=0)

    _check_address = field_validator("address")(lambda cls, v: _checksummed(v))


class WalletConfig(_Strict):
    """A company wallet; `chain = "*"` registers it on every configured chain."""

    chain: str = ALL_CHAINS
    address: ChecksumAddress
    label: str = Field(min_length=1)
    kind: WalletKind
    segregation: Segregation
    start_block: int | None = Field(None, ge=0)

    _check_address = field_validator("address")(lambda cls, v: _checksummed(v))


class ReconConfig(_Strict):
    """Matching policy. Amount thresholds are in token units (decimal strings) keyed by token symbol."""

    interval: PositiveFloat = Field(30.0, description="seconds between reconciler passes in serve")
    window_hours: PositiveFloat = Field(6.0, description="deposit-address rule: block time within this of created_at")
    unmatched_grace_minutes: float = Field(60.0, ge=0)
    missing_grace_hours: float = Field(24.0, ge=0)
    auto_internal: bool = True
    max_combination: int = Field(5, ge=2, le=8)
    incremental_limit: int = Field(20_000, ge=0, description="changed items above which a pass decides everything "
                                                              "again (a full pass) rather than their neighbourhood")
    bulk_matching: bool = Field(True, description="full passes pair the unique tx-hash and deposit-address "
                                                  "matches in SQL before the core decides the rest")
    match_finalized_only: list[str] = Field(default_factory=list, description="chains matched only when finalized")
    tolerance: dict[str, TokenUnits] = Field(default_factory=dict,
                                             description="per token symbol, e.g. {USDC = \"0.01\"}")
    dust: dict[str, TokenUnits] = Field(default_factory=dict, description="per token symbol, e.g. {USDT = \"0.10\"}")
    severity_amounts: list[int] = Field([1_000, 10_000, 100_000], min_length=3, max_length=3,
                                        description="whole token units from which a break is medium, high, critical")
    severity_age_hours: list[float] = Field([24, 72], min_length=2, max_length=2,
                                            description="age from which a break is at least high, critical")
    sla_hours: dict[str, float] = Field(default_factory=lambda: {"low": 72, "medium": 24, "high": 8,
                                                                  "critical": 2})
    four_eyes_reasons: list[Literal["internal", "gas_top_up", "refund", "customer_error", "spam", "write_off",
                                    "other"]] = Field(
        default_factory=lambda: ["write_off", "refund", "other"],
        description="break resolutions that wait for a second person's approval")


class AuditConfig(_Strict):
    head_key: SecretStr | None = Field(None, description="HMAC-SHA256 key that signs `settle audit head`, so that "
                                                         "an anchored head cannot be forged without it")

    @field_validator("head_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise PydanticCustomError("short_secret", "at least 16 characters")
        return value


@dataclass(frozen=True)
class ReconThresholds:
    """`[recon]` tolerance and dust in base units, per token (chain id, address): parsed once, when settings
    load."""

    tolerance: Mapping[tuple[int, str], int]
    dust: Mapping[tuple[int, str], int]


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    key_cache_seconds: float = Field(5.0, ge=0, le=3600, description="an active API key is trusted this long "
                                                                       "without a database read; a revocation "
                                                                       "takes effect within it (0: every request)")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="request bodies over this are refused "
                                                                       "(413) before they are read")


class SupervisionConfig(_Strict):
    """The long-running loops and scheduled jobs of `serve`: retry after any error, and when health says so."""

    backoff_initial_seconds: PositiveFloat = Field(1.0, description="first wait after a loop or job fails")
    backoff_max_seconds: PositiveFloat = Field(60.0, description="the wait doubles (with jitter) up to this")
    stale_intervals: PositiveFloat = Field(5.0, description="health is degraded when a chain has not reported, or "
                                                            "a job not succeeded, for this many of its intervals")
    stale_min_seconds: float = Field(30.0, ge=0, description="... and for at least this long")


class Settings(BaseSettings):
    """All configuration. Build it with `load_settings()`, which reports errors by key."""

    model_config = SettingsConfigDict(env_prefix="SETTLE_", env_nested_delimiter="__", extra="forbid")

    config_file: Path = DEFAULT_CONFIG
    database_url: str = "sqlite+aiosqlite:///./.settle/settle.db"
    data_dir: Path = Path(".settle")
    log_level: str = "INFO"
    balance_check_interval: PositiveFloat = Field(300.0, description="seconds between balance checks in serve")
    api: ApiConfig = ApiConfig()
    recon: ReconConfig = ReconConfig()
    audit: AuditConfig = AuditConfig()
    supervision: SupervisionConfig = SupervisionConfig()
    chains: list[ChainConfig] = []
    tokens: list[TokenConfig] = []
    wallets: list[WalletConfig] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must win over it.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        _check_unique("chains", [c.name for c in self.chains], "name")
        _check_unique("chains", [str(c.chain_id) for c in self.chains], "chain_id")
        names = {c.name for c in self.chains}
        for i, token in enumerate(self.tokens):
            if token.chain not in names:
                raise PydanticCustomError(
                    "unknown_chain",
                    f"tokens[{i}].chain: unknown chain {token.chain!r} (configured: {sorted(names)})",
                )
        _check_unique("tokens", [f"{t.chain}:{t.address.lower()}" for t in self.tokens], "address")
        for i, wallet in enumerate(self.wallets):
            if wallet.chain != ALL_CHAINS and wallet.chain not in names:
                raise PydanticCustomError(
                    "unknown_chain",
                    f"wallets[{i}].chain: unknown chain {wallet.chain!r} (configured: {sorted(names)})",
                )
        check_recon(self, names)
        return self

    # ---- lookups -------------------------------------------------------------------------------------------
    def chain(self, name: str) -> ChainConfig:
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise ConfigError(f"unknown chain {name!r} (configured: {[c.name for c in self.chains]})")

    def tokens_on(self, chain: ChainConfig) -> list[TokenConfig]:
        return [t for t in self.tokens if t.chain == chain.name]

    def chain_by_id(self, chain_id: int) -> ChainConfig | None:
        return self._chains_by_id.get(chain_id)

    def token_at(self, chain_id: int | None, address: str | None) -> TokenConfig | None:
        """The token configured at this (checksummed) address on this chain. There is no lookup by address
        alone: one address can be two tokens (6 decimals on one chain, 18 on another)."""
        return self._tokens_by_chain_address.get((chain_id, address))

    @cached_property
    def recon_thresholds(self) -> ReconThresholds:
        def per_token(table: dict[str, str]) -> Mapping[tuple[int, str], int]:
            return MappingProxyType({(self.chain(t.chain).chain_id, t.address): parse_units(table[t.symbol],
                                                                                            t.decimals)
                                     for t in self.tokens if t.symbol in table})

        return ReconThresholds(per_token(self.recon.tolerance), per_token(self.recon.dust))

    def config_source(self) -> str:
        """The file the settings came from, or where one was looked for."""
        path = self.config_file.absolute()
        return str(path) if path.is_file() else (f"no configuration file (looked for {path}; pass --config or set "
                                                 "SETTLE_CONFIG_FILE)")

    @cached_property
    def _chains_by_id(self) -> dict[int, ChainConfig]:
        return {c.chain_id: c for c in self.chains}

    @cached_property
    def _tokens_by_chain_address(self) -> dict[tuple[int, str], TokenConfig]:
        ids = {c.name: c.chain_id for c in self.chains}
        return {(ids[t.chain], t.address): t for t in self.tokens}

    def wallets_on(self, chain: ChainConfig) -> list[Wallet]:
        """The configuration's wallets on `chain`: what the wallet registry is seeded with
        (`app.wallet_book`, which the rest of the app reads)."""
        return [Wallet(chain_id=chain.chain_id, address=Address(w.address), label=w.label, kind=w.kind,
                       segregation=w.segregation, start_block=w.start_block)
                for w in self.wallets if w.chain in (ALL_CHAINS, chain.name)]


def _check_unique(section: str, values: list[str], key: str) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise PydanticCustomError(
                "duplicate", f"{section}[{i}].{key}: duplicates {section}[{seen[value]}] ({value})"
            )
        seen[value] = i


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = _format_loc(tuple(p for p in err["loc"] if p not in ("function-after", "lax-or-strict")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


class _ConfigLocator(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SETTLE_", extra="ignore")
    config_file: Path = DEFAULT_CONFIG

    @property
    def is_named(self) -> bool:
        return "config_file" in self.model_fields_set


def load_settings(config_file: Path | None = None, *, require_file: bool = False, **overrides: Any) -> Settings:
    """Read the TOML file (the `--config` path, else `SETTLE_CONFIG_FILE`, else ./settle.toml) and the env.

    Raises ConfigError naming each bad key. A missing file is an error only when `require_file` is set or the
    path was given explicitly.
    """
    locator = _ConfigLocator()
    path = config_file or locator.config_file
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid configuration in {path}: not valid TOML: {exc}") from None
    elif require_file or config_file is not None or locator.is_named:
        named = "" if config_file is not None or not locator.is_named else ", named by SETTLE_CONFIG_FILE"
        raise ConfigError(f"configuration file {path} not found (looked for {path.absolute()}{named}; copy "
                          "settle.example.toml to start)")
    data.update(overrides)
    data["config_file"] = path
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from None
