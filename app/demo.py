"""`make demo`: two local anvil chains with test stablecoins, demo wallets, a mix of transfers, and the API
with its chain watchers in-process, while a background thread keeps making new customer deposits.

Run `python -m app.demo [--port 8000] [--exit-after SECONDS] [--no-traffic]`. Everything it writes lives under
./.settle/demo (settle.toml and the SQLite database, recreated on every run). Ctrl-C or SIGTERM stops it all:
the server, the traffic thread and both anvils; the exit code is then 0. Amounts are decimal strings in token
units, converted to base units (ints) with `parse_units`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

if __name__ == "__main__":  # a signal while the imports below load (~2 s): nothing runs yet, so just exit
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, lambda *_: sys.exit(0))

import uvicorn  # noqa: E402
from eth_utils.crypto import keccak  # noqa: E402

from app.api.main import create_app  # noqa: E402
from app.logs import configure_logging  # noqa: E402
from app.persistence.migrate import upgrade  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from app.settlement.amounts import parse_units  # noqa: E402
from chains.devnet import Anvil, BatchSender, DevnetError, Token, TokenKind, deploy_token  # noqa: E402
from wallets import Address, to_checksum  # noqa: E402

log = logging.getLogger("app.demo")

HOST = "127.0.0.1"
DEMO_DIR = Path(".settle/demo")
CHAINS: tuple[tuple[str, int, tuple[TokenKind, ...]], ...] = (
    ("devnet-a", 31337, ("usdc", "usdt", "dai")),
    ("devnet-b", 31338, ("usdc", "dai")),
)
WALLETS: tuple[tuple[str, str, str], ...] = (  # label, kind, segregation
    ("hot", "hot", "house"), ("cold", "cold", "house"), ("gas", "gas", "house"),
    *((f"deposit-{i}", "deposit", "customer") for i in (1, 2, 3)),
)
CUSTOMERS = ("customer-alice", "customer-bob", "customer-carol")  # external senders of the deposits
TRAFFIC_EVERY_S = 3.0
BLOCK_TIME_S = 1


def demo_address(label: str) -> Address:
    """A deterministic address (keccak of the label) that nobody holds a key for; anvil impersonates it."""
    return to_checksum("0x" + keccak(text=f"settle-demo:{label}")[-20:].hex())


@dataclass
class DemoChain:
    """One running devnet: its config name, anvil and deployed tokens by symbol, with their decimals."""

    name: str
    anvil: Anvil
    tokens: dict[str, Token]
    decimals: dict[str, int]

    def units(self, symbol: str, amount: str) -> int:
        """`amount` (decimal string in token units) in base units of `symbol`."""
        return parse_units(amount, self.decimals[symbol])


class _Shutdown:
    """SIGINT/SIGTERM handler: during start-up, unwind with KeyboardInterrupt; once a server exists, ask it to
    stop (uvicorn captures the signals while serving and re-raises them here afterwards); during teardown,
    ignore them."""

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.unwind = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.server is not None:
            self.server.should_exit = True
        elif self.unwind:
            raise KeyboardInterrupt


def seed(chain: DemoChain) -> None:
    """The opening mix of transfers (automine on: each call returns once its tx is mined)."""
    w = {label: demo_address(label) for label, _, _ in WALLETS}
    customers = [demo_address(c) for c in CUSTOMERS]
    for symbol, token in chain.tokens.items():
        for customer in customers:  # mints to outsiders: not ours, not indexed
            token.mint(customer, chain.units(symbol, "1000000"))
        for i, customer in enumerate(customers):  # customer deposits
            token.transfer(customer, w[f"deposit-{i + 1}"], chain.units(symbol, f"{1250 + 100 * i}.5"))
        token.transfer(w["deposit-1"], w["hot"], chain.units(symbol, "1250.5"))  # sweep deposit -> hot
    usdc = chain.tokens["USDC"]
    usdc.transfer(w["hot"], w["cold"], chain.units("USDC", "500"))  # hot -> cold
    usdc.transfer(w["hot"], demo_address("payee-withdrawal"), chain.units("USDC", "250"))  # withdrawal
    usdc.mint(w["hot"], chain.units("USDC", "10000"))  # Transfer from 0x0
    usdc.burn(w["hot"], chain.units("USDC", "2500"))  # Transfer to 0x0
    payees = [demo_address(f"payee-{i}") for i in range(20)]
    BatchSender.deploy(chain.anvil).batch_transfer(  # 20 payouts from hot in one transaction
        usdc, w["hot"], payees, [chain.units("USDC", f"{10 + i}.25") for i in range(20)])
    usdc.transfer(customers[0], demo_address("stranger"), chain.units("USDC", "5"))  # does not touch us


def start_chain(name: str, chain_id: int, kinds: Sequence[TokenKind], anvils: list[Anvil]) -> DemoChain:
    """Start an anvil (appended to `anvils` first, so it is stopped whatever happens), deploy and seed."""
    anvil = Anvil(chain_id, slots_in_an_epoch=2, block_time=BLOCK_TIME_S, own_session=True)
    anvils.append(anvil)
    anvil.start()
    anvil.set_automine(True)  # set-up at full speed; interval mining resumes in `main`
    tokens = {t.symbol(): t for t in (deploy_token(anvil, kind) for kind in kinds)}
    chain = DemoChain(name, anvil, tokens, {s: t.decimals() for s, t in tokens.items()})
    seed(chain)
    return chain


def db_url(db: Path) -> str:
    """SQLAlchemy URL of the demo's SQLite file (an absolute path)."""
    return f"sqlite+aiosqlite:///{db}"


def _toml(value: object) -> str:
    return json.dumps(value) if isinstance(value, str | list) else repr(value)


def write_config(path: Path, db: Path, chains: Sequence[DemoChain], port: int) -> None:
    """The demo's settle.toml (usable with `settle -c`): both chains, their tokens, all wallets everywhere."""
    top = {"database_url": db_url(db), "data_dir": str(path.parent), "balance_check_interval": 30.0}
    lines = ["# Written by `python -m app.demo`; recreated on every run."]
    lines += [f"{k} = {_toml(v)}" for k, v in top.items()]
    tables: list[tuple[str, dict[str, object]]] = [("[api]", {"host": HOST, "port": port})]
    for c in chains:
        tables.append(("[[chains]]", {"name": c.name, "chain_id": c.anvil.chain_id, "rpc_urls": [c.anvil.url],
                                      "start_block": 0, "poll_interval": 0.5, "confirmations": "safe",
                                      "finality": "tag", "max_getlogs_range": 500, "request_timeout": 5.0,
                                      "max_retries": 3}))
        tables += [("[[tokens]]", {"chain": c.name, "address": t.address, "symbol": s,
                                   "decimals": c.decimals[s]}) for s, t in c.tokens.items()]
    tables += [("[[wallets]]", {"chain": "*", "address": demo_address(label), "label": label, "kind": kind,
                                "segregation": seg}) for label, kind, seg in WALLETS]
    for header, body in tables:
        lines += ["", header, *(f"{k} = {_toml(v)}" for k, v in body.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def traffic(chains: Sequence[DemoChain], stop: threading.Event) -> None:
    """Every TRAFFIC_EVERY_S seconds a new customer deposit, round robin over chains, tokens and customers."""
    plan = itertools.cycle([(c, s) for c in chains for s in c.tokens])
    for n in itertools.count(1):
        if stop.wait(TRAFFIC_EVERY_S):
            return
        chain, symbol = next(plan)
        customer, deposit, amount = CUSTOMERS[n % 3], f"deposit-{n % 3 + 1}", f"{n}.{n % 100:02d}"
        try:
            tx = chain.tokens[symbol].transfer(demo_address(customer), demo_address(deposit),
                                               chain.units(symbol, amount), wait=False)
        except DevnetError as exc:
            if stop.is_set():
                return
            log.warning("traffic: %s deposit failed: %s", chain.name, exc)
            continue
        log.info("traffic: %s %s %s %s -> %s (tx %s)", chain.name, amount, symbol, customer, deposit, tx)


def free_port_from(start: int) -> int:
    """The first port from `start` (50 tried) that 127.0.0.1 can listen on (with SO_REUSEADDR, as uvicorn)."""
    for port in range(start, min(start + 50, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
                return port
            except OSError:
                continue
    raise SystemExit(f"demo: no free port in {start}..{start + 49}")


async def demo_key(settings: Settings) -> str:
    """A key with every scope for the demo's fresh database (printed in the banner)."""
    from app.access import Scope, create_key
    from app.persistence.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        return await create_key(engine, name="demo", scopes=list(Scope), actor="demo")
    finally:
        await engine.dispose()


def banner(base: str, config: Path, db: Path, chains: Sequence[DemoChain], traffic_on: bool, key: str) -> str:
    """What to look at and how: the URLs, the chains with their anvil pids, curl examples."""
    rows = [f"  {c.name:9} chain {c.anvil.chain_id}  rpc {c.anvil.url}  anvil pid {c.anvil.pid}  "
            + " ".join(f"{s} {t.address}" for s, t in c.tokens.items()) for c in chains]
    wallets = [f"  {'wallets' if i == 0 else '':9} {demo_address(label)}  {label} ({kind}, {seg})"
               for i, (label, kind, seg) in enumerate(WALLETS)]
    settle = Path(sys.executable).with_name("settle")
    live = f"a new customer deposit every {TRAFFIC_EVERY_S:g} s" if traffic_on else "off (--no-traffic)"
    return "\n".join([
        "", "settle demo", f"  API       {base}   (OpenAPI docs: {base}/docs)", f"  config    {config}",
        f"  database  {db}", *rows, *wallets, f"  traffic   {live}", f"  API key   {key}   (every scope)", "",
        "Try:", f"  export SETTLE_KEY={key}", f"  curl -s {base}/v1/health",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" {base}/v1/chains",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" '{base}/v1/transfers?chain=devnet-a&limit=5'",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" '{base}/v1/transfers?state=seen'    # not yet confirmed",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" {base}/v1/balances             # treasury",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" {base}/v1/transfers/unmatched  # the ops queue",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" '{base}/v1/feed?after=0&limit=20'  # the core-recon feed",
        f"  curl -s -H \"Authorization: Bearer $SETTLE_KEY\" {base}/v1/wallets              # the registry",
        f"  open {base}/docs    (Authorize with the key)",
        f"  {settle if settle.exists() else 'settle'} -c {config} chains", "Press Ctrl-C to stop.", ""])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or --exit-after; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="API port (the next free one if taken)")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS", help="serve this long, then stop")
    parser.add_argument("--no-traffic", action="store_true", help="no background deposits while serving")
    args = parser.parse_args(argv)

    shutdown = _Shutdown()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, shutdown)
    anvils: list[Anvil] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    timer: threading.Timer | None = None
    demo_dir = DEMO_DIR.resolve()
    config, db = demo_dir / "settle.toml", demo_dir / "settle.db"
    try:
        demo_dir.mkdir(parents=True, exist_ok=True)
        for stale in (db, db.with_name("settle.db-wal"), db.with_name("settle.db-shm")):
            stale.unlink(missing_ok=True)
        print("demo: starting two anvils and deploying tokens ...", flush=True)
        chains = [start_chain(name, cid, kinds, anvils) for name, cid, kinds in CHAINS]
        for anvil in anvils:
            anvil.rpc("evm_setIntervalMining", [BLOCK_TIME_S])  # a block every second from now on
        port = free_port_from(args.port)
        write_config(config, db, chains, port)
        settings: Settings = load_settings(config)
        # SETTLE_* variables may override the file; never let them point the demo at another database.
        settings = settings.model_copy(update={"database_url": db_url(db), "data_dir": demo_dir})
        configure_logging(settings)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the devnet client's per-request lines
        upgrade(settings.database_url)
        key = asyncio.run(demo_key(settings))
        server = uvicorn.Server(uvicorn.Config(create_app(settings, run_watchers=True), host=HOST, port=port,
                                               log_config=None, timeout_graceful_shutdown=5))
        shutdown.server = server
        if not args.no_traffic:
            threads.append(threading.Thread(target=traffic, args=(chains, stop), name="demo-traffic",
                                           daemon=True))
        if args.exit_after is not None:
            timer = threading.Timer(args.exit_after, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            threads.append(timer)
        print(banner(f"http://{HOST}:{port}", config, db, chains, not args.no_traffic, key), flush=True)
        for thread in threads:
            thread.start()
        server.run()
    except KeyboardInterrupt:
        print("demo: interrupted during start-up", file=sys.stderr)
    except DevnetError as exc:
        print(f"demo: devnet failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown.unwind = False
        shutdown.server = None
        stop.set()
        if timer is not None:
            timer.cancel()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=35)
        for anvil in anvils:
            anvil.stop()
        print("demo: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
