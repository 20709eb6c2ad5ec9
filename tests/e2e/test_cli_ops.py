"""The `settle` CLI as cron, CI and an operator meet it (subprocesses, output not a terminal): every command on a
fresh database upgrades it or says to; configuration errors whole and unwrapped; tables whole (TSV); `balances
check` exits non-zero on a difference; `keys create --scope a --scope b`; `audit head` and `audit verify --head`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.db import sync_url
from tests.support.harness import Devnet, address_for, wallet, write_toml

REPO = Path(__file__).parents[2]
DEPOSIT = address_for("deposit-ops-cli")
CUSTOMER = address_for("customer-ops-cli")
HEAD_KEY = "a-head-key-of-some-length"


def settle(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    environment.update({"PYTHONPATH": str(REPO), "COLUMNS": "80", **(env or {})})
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=environment)


def _fresh(database_url: str) -> str:
    """A database with no schema at all (the fixture upgraded its own)."""
    if database_url.startswith("postgresql"):
        with create_engine(sync_url(database_url)).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        return database_url
    return database_url.replace("settle.db", "fresh.db")


def _offline_config(tmp_path: Path, url: str) -> Path:
    return write_toml(tmp_path / "settle.toml", database_url=url, data_dir=tmp_path / "data", chains=[
        {"name": "a", "chain_id": 31_001, "rpc_urls": ["http://127.0.0.1:9"], "request_timeout": 1,
         "max_retries": 1}], tokens=[], wallets=[wallet(DEPOSIT, "dep")])


READ_ONLY = "run `settle db upgrade`"
COMMANDS = [  # (arguments, exit code on a fresh database, what it says); {csv} is an empty records file
    (["db", "upgrade"], 0, "latest schema"),
    (["chains"], 2, READ_ONLY),
    (["chains", "allow-deep-reorg", "a"], 1, "not in alert"),
    (["chains", "acknowledge", "a"], 1, "not in alert"),
    (["balances", "check"], 1, "has not been indexed yet"),
    (["index", "--once"], 1, "error:"),
    (["records", "import", "{csv}"], 0, "created 0"),
    (["recon", "--once"], 0, "pass: matched 0"),
    (["recon", "--check-rebuild"], 0, "rebuild differences: 0"),
    (["audit", "verify"], 2, READ_ONLY),
    (["audit", "head"], 2, READ_ONLY),
    (["keys", "create", "--name", "k1", "--scope", "ops"], 0, "created with scopes ops"),
    (["keys", "list"], 2, READ_ONLY),
    (["keys", "revoke", "k1"], 1, "no active key named 'k1'"),
]


@pytest.mark.parametrize(("args", "code", "says"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_every_command_on_a_fresh_database_upgrades_it_or_says_to(
    database_url: str, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    url = _fresh(database_url)
    config = _offline_config(tmp_path, url)
    (tmp_path / "records.csv").write_text("source,external_id,kind,chain,token,amount,wallet,segregation,status,"
                                          "created_at\n")
    done = settle("--config", str(config), *[a.replace("{csv}", str(tmp_path / "records.csv")) for a in args])
    out = done.stdout + done.stderr
    assert "Traceback" not in out and (done.returncode, says in out) == (code, True), out
    if code == 2:  # read-only: nothing was created; after the upgrade it answers
        assert settle("--config", str(config), "db", "upgrade").returncode == 0
        again = settle("--config", str(config), *args)
        assert again.returncode == 0, again.stdout + again.stderr


def test_configuration_errors_are_printed_whole_and_unwrapped(tmp_path: Path) -> None:
    config = tmp_path / "settle.toml"
    config.write_text('[[chains]]\nname = "Main Net"\nchain_id = 1\nrpc_urls = ["https://x.example"]\n'
                      'confirmations = "soon"\n\n[[tokens]]\nchain = "a-chain-whose-name-is-long-enough-to-wrap"\n'
                      'address = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"\nsymbol = "USDC"\ndecimals = 6\n')
    done = settle("--config", str(config), "chains")
    lines = done.stderr.splitlines()
    assert done.returncode == 2
    assert "  chains[0].name: String should match pattern '^[a-z0-9][a-z0-9_-]*$'" in lines
    assert '  chains[0].confirmations: must be a whole number >= 0 or "safe"' in lines
    config.write_text(config.read_text().replace("Main Net", "main").replace('"soon"', "3"))
    done = settle("--config", str(config), "chains")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("tokens[0].chain: unknown chain 'a-chain-whose-name-is-long-enough-to-wrap' "
                                        "(configured: ['main'])"), done.stderr


def test_a_missing_configuration_names_the_paths_looked_for(tmp_path: Path) -> None:
    done = settle("index", "--once", cwd=tmp_path)
    assert done.returncode == 2 and f"looked for {tmp_path / 'settle.toml'}" in done.stderr, done.stderr
    named = settle("balances", "check", cwd=tmp_path, env={"SETTLE_CONFIG_FILE": str(tmp_path / "prod.toml")})
    assert named.returncode == 2 and str(tmp_path / "prod.toml") in named.stderr and "SETTLE_CONFIG_FILE" in \
        named.stderr, named.stderr
    explicit = settle("--config", "conf/settle.toml", "chains", cwd=tmp_path)
    assert explicit.returncode == 2 and str(tmp_path / "conf" / "settle.toml") in explicit.stderr


def test_keys_create_keeps_every_scope_given(database_url: str, tmp_path: Path) -> None:
    config = _offline_config(tmp_path, database_url)
    for name, scopes in (("two", ["--scope", "ops", "--scope", "approver"]), ("comma", ["--scope", "feed,ingest"]),
                         ("mixed", ["--scope", "admin", "--scope", "ops,treasury"])):
        assert settle("--config", str(config), "keys", "create", "--name", name, *scopes).returncode == 0
    listed = settle("--config", str(config), "keys", "list").stdout
    rows = {line.split()[0]: line.split()[2] for line in listed.splitlines()}
    assert rows == {"two": "ops,approver", "comma": "ingest,feed", "mixed": "treasury,ops,admin"}
    bad = settle("--config", str(config), "keys", "create", "--name", "x", "--scope", "ops", "--scope", "root")
    assert bad.returncode == 2 and "unknown scope 'root'" in bad.stderr


def _audit_entries(database_url: str) -> list[int]:
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM audit_log ORDER BY id")).scalars())
    engine.dispose()
    return ids


def test_audit_head_is_signed_and_verify_holds_the_log_against_it(database_url: str, tmp_path: Path) -> None:
    config = _offline_config(tmp_path, database_url)
    keyed = {"SETTLE_AUDIT__HEAD_KEY": HEAD_KEY}
    for name in ("k1", "k2", "k3"):
        assert settle("--config", str(config), "keys", "create", "--name", name, "--scope", "ops").returncode == 0
    head = json.loads(settle("--config", str(config), "audit", "head", "--json", env=keyed).stdout)
    assert head["sequence"] == 3 and len(head["hash"]) == 64 and head["at"].endswith("+00:00")
    assert head["anchor"] == f"3:{head['hash']}:{head['signature']}" and len(head["signature"]) == 64
    plain = settle("--config", str(config), "audit", "head").stdout
    assert f"3:{head['hash']}" in plain and "unsigned" in plain
    ok = settle("--config", str(config), "audit", "verify", "--head", head["anchor"], env=keyed)
    assert ok.returncode == 0 and "intact: 3 entries" in ok.stdout, ok.stdout + ok.stderr
    forged = head["anchor"].replace("3:", "2:", 1)  # an attacker who cut one entry and rewrote the anchor
    bad = settle("--config", str(config), "audit", "verify", "--head", forged, env=keyed)
    assert bad.returncode == 1 and "signature" in bad.stderr
    no_key = settle("--config", str(config), "audit", "verify", "--head", head["anchor"])
    assert no_key.returncode == 2 and "audit.head_key" in no_key.stderr
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:  # cut the last two entries, and set the head back to match
        ids = _audit_entries(database_url)
        conn.execute(text("DELETE FROM audit_log WHERE id > :id"), {"id": ids[0]})
    cut = settle("--config", str(config), "audit", "verify")
    assert cut.returncode == 1 and "entries 2..3 are missing" in cut.stderr, cut.stderr
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET seq = 1, hash = (SELECT hash FROM audit_log), entry_id = :id"),
                     {"id": ids[0]})
    engine.dispose()
    assert settle("--config", str(config), "audit", "verify").returncode == 0  # the database alone cannot tell
    anchored = settle("--config", str(config), "audit", "verify", "--head", head["anchor"], env=keyed)
    assert anchored.returncode == 1 and "entries 2..3 are missing" in anchored.stderr, anchored.stderr


async def test_balances_check_exits_non_zero_on_a_difference_and_prints_whole_rows(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**9)
    usdc.transfer(CUSTOMER, DEPOSIT, 5_000_000)
    usdc.transfer(CUSTOMER, DEPOSIT, 1_250_000)
    chain_a.anvil.mine(8)
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                        chains=[chain_a.chain_config("a")], tokens=chain_a.token_configs("a"),
                        wallets=[wallet(DEPOSIT, "dep")])
    assert settle("--config", str(config), "index", "--once").returncode == 0
    agree = settle("--config", str(config), "balances", "check")
    assert agree.returncode == 0, agree.stdout + agree.stderr
    lines = agree.stdout.splitlines()
    assert lines[0].split("\t") == ["chain", "wallet", "token", "block", "indexed", "balanceOf", "difference"]
    assert f"a\t{DEPOSIT}\tUSDC\t" in agree.stdout and "\t6.25\t6.25\t0" in agree.stdout  # whole, not cut at 80
    async with engine.begin() as conn:  # lose one indexed transfer: the indexed balance is now wrong
        await conn.execute(text("DELETE FROM transfers WHERE amount = 1250000"))
    differs = settle("--config", str(config), "balances", "check")
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert f"a\t{DEPOSIT}\tUSDC\t" in differs.stdout and "\t5\t6.25\t1.25" in differs.stdout
    assert "1 difference" in differs.stderr
    status = settle("--config", str(config), "chains")
    assert status.returncode == 0 and status.stdout.splitlines()[0].startswith("chain\tid\tstate\t")


def test_serve_on_a_fresh_database_upgrades_it_and_answers(database_url: str, tmp_path: Path) -> None:
    import signal
    import time
    import urllib.error
    import urllib.request

    from chains.devnet.anvil import free_port

    url = _fresh(database_url)
    config = _offline_config(tmp_path, url)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    child = subprocess.Popen([sys.executable, "-m", "app", "--config", str(config), "serve", "--no-watchers",
                              "--port", str(port)], cwd=REPO, env={**environment, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert child.poll() is None, child.stdout.read() if child.stdout else ""
            assert time.monotonic() < deadline
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as response:
                    json.loads(response.read())
                    break
            except urllib.error.HTTPError as exc:  # 503 while degraded is an answer too
                json.loads(exc.read())
                break
            except OSError:
                time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGTERM)
        output = child.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    done = settle("--config", str(config), "audit", "verify")  # the schema is there: a read-only command answers
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_bad_recon_policy_stops_the_command_before_any_pass(database_url: str, tmp_path: Path) -> None:
    config = _offline_config(tmp_path, database_url)
    config.write_text(config.read_text().replace("[[chains]]", '[recon]\ntolerance = {DAI = "0.01"}\n\n[[chains]]', 1))
    done = settle("--config", str(config), "recon", "--once")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "  recon.tolerance.DAI: unknown token symbol (configured: none)" in done.stderr.splitlines(), done.stderr
