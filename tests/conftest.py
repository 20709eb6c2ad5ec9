"""Shared fixtures: one anvil per chain for the session (evm_snapshot/evm_revert around each test), and a fresh
database per test on SQLite and on PostgreSQL. Under CI=true PostgreSQL must be reachable: the run fails rather
than skipping it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.persistence.db import make_engine
from app.persistence.migrate import upgrade
from chains.devnet import Anvil, BatchSender, Token, deploy_token
from tests.support.harness import Devnet


class TestEnvironment(BaseSettings):
    """The test run's own knobs (the product reads its environment only through app.settings)."""

    model_config = SettingsConfigDict(extra="ignore")
    ci: bool = False
    settle_test_postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"


ENV = TestEnvironment()


def _postgres_reachable() -> str | None:
    try:
        with create_engine(ENV.settle_test_postgres_url.replace("postgresql://", "postgresql+psycopg://"),
                           connect_args={"connect_timeout": 3}).connect() as conn:
            conn.execute(text("select 1"))
        return None
    except OperationalError as exc:
        return str(exc).splitlines()[0]


_PG_PROBLEM = _postgres_reachable()


def pytest_configure(config: pytest.Config) -> None:
    if ENV.ci and _PG_PROBLEM:
        raise pytest.UsageError(f"CI=true but PostgreSQL is unreachable ({_PG_PROBLEM}); refusing to skip its tests")


# ---- chains ----------------------------------------------------------------------------------------------------
def _devnet(chain_id: int) -> Iterator[Devnet]:
    anvil = Anvil(chain_id, slots_in_an_epoch=4).start()
    try:
        tokens = {kind: deploy_token(anvil, kind) for kind in ("usdc", "usdt", "dai")}
        yield Devnet(anvil=anvil, tokens=tokens, batch=BatchSender.deploy(anvil))
    finally:
        anvil.stop()


@pytest.fixture(scope="session")
def devnet_a() -> Iterator[Devnet]:
    yield from _devnet(31_001)


@pytest.fixture(scope="session")
def devnet_b() -> Iterator[Devnet]:
    yield from _devnet(31_002)


@pytest.fixture
def fresh_chain_a() -> Iterator[Devnet]:
    """A new anvil for one test. anvil 1.7.1 sometimes rebuilds a deep `anvil_reorg` (depth 10) from a state that
    lacks the contracts' code once the node has run many snapshot/revert cycles (seen: `eth_getCode` is `0x` right
    after the reorg, on the sixth reorg test of one node; never on a fresh node). Modules whose tests reorg deeply
    take this instead of the shared node."""
    yield from _devnet(31_001)


@pytest.fixture
def chain_a(devnet_a: Devnet) -> Iterator[Devnet]:
    with devnet_a.isolated():
        yield devnet_a


@pytest.fixture
def chain_b(devnet_b: Devnet) -> Iterator[Devnet]:
    with devnet_b.isolated():
        yield devnet_b


# ---- databases -------------------------------------------------------------------------------------------------
def _reset_postgres() -> str:
    url = ENV.settle_test_postgres_url
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/settle.db"
    else:
        if _PG_PROBLEM:
            pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
        url = _reset_postgres()
    upgrade(url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[object]:
    eng = make_engine(database_url)
    yield eng
    await eng.dispose()


__all__ = ["Token"]
