"""The `settle` command line."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.errors import SettleError
from app.settings import Settings, load_settings

cli = typer.Typer(help="Stablecoin settlement tracker.", no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
chains_cli = typer.Typer(help="Chains: status and incident handling.", invoke_without_command=True)
balances_cli = typer.Typer(help="Balance checks against balanceOf.", no_args_is_help=True)
records_cli = typer.Typer(help="Internal records (deposits, withdrawals, internal transfers).", no_args_is_help=True)
audit_cli = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys and their scopes (treasury, ops, approver, ingest, feed, admin).",
                       no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(records_cli, name="records")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(db_cli, name="db")
cli.add_typer(chains_cli, name="chains")
cli.add_typer(balances_cli, name="balances")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settle.toml path")]


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@cli.callback()
def _root(ctx: typer.Context, config: ConfigOpt = None) -> None:
    try:
        ctx.obj = load_settings(config)
    except SettleError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, markup=True)
        raise typer.Exit(2) from None
    from app.logs import configure_logging

    configure_logging(ctx.obj)


def _upgrade(settings: Settings) -> None:
    from app.persistence.migrate import upgrade

    upgrade(settings.database_url)


@db_cli.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the schema migrations (idempotent)."""
    _upgrade(_settings(ctx))
    console.print("database is at the latest schema")


@cli.command("index")
def index(
    ctx: typer.Context,
    chain: Annotated[str | None, typer.Option(help="only this chain")] = None,
    once: Annotated[bool, typer.Option("--once", help="stop when caught up to the head")] = False,
) -> None:
    """Index Transfers from each chain's start block to the head, then follow the head."""
    from app.indexer import index_chains, tune_gc_for_indexing
    from app.persistence.db import make_engine

    settings = _settings(ctx)
    chains = [settings.chain(chain)] if chain else settings.chains
    if not chains:
        err.print("no chains configured")
        raise typer.Exit(2)
    _upgrade(settings)

    async def run() -> None:
        tune_gc_for_indexing()
        engine = make_engine(settings.database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as progress:
            tasks: dict[str, object] = {}

            def on_progress(name: str, block: int, head: int) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=head, completed=block)
                progress.update(tasks[name], completed=block, total=head)  # type: ignore[arg-type]

            try:
                await index_chains(settings, engine, chains, once=once, stop=stop, on_progress=on_progress)
            finally:
                await engine.dispose()

    _run(run())
    if once:
        console.print("caught up")


def _run(coro: object) -> None:
    from chains.errors import ChainError

    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except (SettleError, ChainError) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from None


@chains_cli.callback()
def chains_status(ctx: typer.Context) -> None:
    """Head, indexed, safe, finalized, lag and last error per chain."""
    if ctx.invoked_subcommand is not None:
        return
    from app.api.routes import _chains
    from app.persistence.db import make_engine

    settings = _settings(ctx)
    _upgrade(settings)

    rows: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            rows.extend(await _chains(settings, engine))
        finally:
            await engine.dispose()

    _run(run())
    table = Table("chain", "id", "state", "head", "indexed", "safe", "finalized", "lag", "last error")
    for c in rows:
        table.add_row(c.name, str(c.chain_id), c.state, *(str(v) if v is not None else "-" for v in (
            c.head, c.indexed, c.safe, c.finalized, c.lag)), (c.alert or c.last_error or "")[:80])
    console.print(table)


@chains_cli.command("allow-deep-reorg")
def allow_deep_reorg(ctx: typer.Context, name: str) -> None:
    """Incident response: let the watcher of a chain in `alert` roll back below finality (recorded as deep)."""
    from app.persistence.db import make_engine
    from app.persistence.watcher_store import SqlWatcherStore

    settings = _settings(ctx)
    chain = settings.chain(name)

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            if not await SqlWatcherStore(engine).allow_deep_reorg(chain.chain_id):
                raise SettleError(f"chain {name} is not in alert")
        finally:
            await engine.dispose()

    _run(run())
    console.print(f"{name}: the next pass may roll back below finality")


@chains_cli.command("acknowledge")
def acknowledge(
    ctx: typer.Context, name: str,
    actor: Annotated[str, typer.Option(help="who acknowledges (recorded in the audit log)")] = "cli",
) -> None:
    """Incident response: clear a chain's alert that no longer reproduces (the node agrees with the stored cursor
    again), without a walk or a rollback; refused while the cursor is still not canonical."""
    from app.indexer import acknowledge_alert
    from app.persistence.db import make_engine

    settings = _settings(ctx)
    chain = settings.chain(name)

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            cursor = await acknowledge_alert(settings, engine, chain, actor=actor)
            console.print(f"{name}: alert acknowledged; block {cursor.number} {cursor.hash} is canonical again")
        finally:
            await engine.dispose()

    _run(run())


@balances_cli.command("check")
def balances_check(
    ctx: typer.Context, chain: Annotated[str | None, typer.Option(help="only this chain")] = None
) -> None:
    """Compare indexed balances with balanceOf at the indexed block; store and print the differences."""
    from app.balance_check import check_chain
    from app.persistence.db import make_engine
    from app.settlement.amounts import format_units

    settings = _settings(ctx)
    chains = [settings.chain(chain)] if chain else settings.chains
    results: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            for c in chains:
                results.extend((c, r) for r in await check_chain(settings, engine, c))
        finally:
            await engine.dispose()

    _run(run())
    table = Table("chain", "wallet", "token", "block", "indexed", "balanceOf", "difference")
    for c, r in results:
        decimals = next(t.decimals for t in settings.tokens_on(c) if t.address == r.token)
        table.add_row(c.name, r.wallet, r.symbol, str(r.block_number), format_units(r.indexed, decimals),
                      format_units(r.onchain, decimals), format_units(r.difference, decimals))
    console.print(table)


@cli.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    watchers: Annotated[bool, typer.Option("--watchers/--no-watchers", help="run the chain watchers")] = True,
) -> None:
    """Run the HTTP API and, in the same process, the chain watchers."""
    import uvicorn

    from app.api.main import create_app
    from app.indexer import tune_gc_for_indexing

    settings = _settings(ctx)
    _upgrade(settings)
    if watchers:  # a URL on another chain or a token's wrong decimals: refuse to start, naming it
        from app.indexer import refuse_misconfigured_chains

        _run(refuse_misconfigured_chains(settings))
    app = create_app(settings, run_watchers=watchers)
    tune_gc_for_indexing()
    uvicorn.run(app, host=host or settings.api.host, port=port or settings.api.port, log_config=None)


@records_cli.command("import")
def records_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header row")],
    actor: Annotated[str, typer.Option(help="who is importing (recorded in the audit log)")] = "cli",
) -> None:
    """Import records from CSV: same rules as POST /v1/records, all or nothing, in chunks of 10,000."""
    import csv

    from app.persistence.db import make_engine
    from app.records import MAX_BATCH, RecordsRejected, ingest

    settings = _settings(ctx)
    _upgrade(settings)
    with file.open(newline="") as handle:
        rows = [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)]
    for row in rows:
        if row.get("log_index") is not None and str(row["log_index"]).isdigit():
            row["log_index"] = int(row["log_index"])
    totals = {"created": 0, "updated": 0, "unchanged": 0}

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            with Progress(TextColumn("records"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
                task = progress.add_task("import", total=len(rows))
                for i in range(0, len(rows), MAX_BATCH):
                    for key, value in (await ingest(settings, engine, rows[i:i + MAX_BATCH], actor=actor)).items():
                        totals[key] += value
                    progress.update(task, advance=len(rows[i:i + MAX_BATCH]))
        except RecordsRejected as exc:
            for e in exc.errors[:50]:
                err.print(f"row {e.index + 2 + i}: {e.field}: {e.reason}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        finally:
            await engine.dispose()

    _run(run())
    console.print(f"created {totals['created']}, updated {totals['updated']}, unchanged {totals['unchanged']}")


@cli.command("recon")
def recon(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between passes")] = 30.0,
    full: Annotated[bool, typer.Option("--full", help="decide every unexplained item again (after changing the "
                                       "matching policy), not only what changed")] = False,
    check_rebuild: Annotated[bool, typer.Option("--check-rebuild", help="dry run: decide everything from "
                                                "scratch and compare with the current matches")] = False,
) -> None:
    """Reconcile transfers with records: matches, breaks, classifications."""
    from app.persistence.db import make_engine
    from app.reconciler import rebuild_differences, reconcile_once

    settings = _settings(ctx)
    _upgrade(settings)
    differs: list[bool] = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            if check_rebuild:
                only_now, only_scratch = await rebuild_differences(settings, engine)
                for label, items in (("only in the current matches", only_now), ("only from scratch", only_scratch)):
                    for transfer_ids, record_keys in sorted(items):
                        console.print(f"{label}: transfers {list(transfer_ids)} records {list(record_keys)}")
                console.print(f"rebuild differences: {len(only_now) + len(only_scratch)}")
                differs.append(bool(only_now or only_scratch))
                return
            first = True
            while True:
                s = await reconcile_once(settings, engine, full=full and first)
                first = False
                console.print(f"{'full' if s.full else 'incremental'} pass: matched {s.matched}, unmatched by reorg"
                              f" {s.unmatched_by_reorg}, breaks opened "
                              f"{len(s.opened)}, closed {s.closed}, classified {s.classified}")
                if once:
                    return
                await asyncio.sleep(interval)
        finally:
            await engine.dispose()

    _run(run())
    if differs and differs[0]:
        raise typer.Exit(1)


@audit_cli.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; name the first bad entry."""
    from app.persistence import audit
    from app.persistence.db import make_engine

    settings = _settings(ctx)
    _upgrade(settings)
    result: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                result.extend(await audit.verify(conn))
        finally:
            await engine.dispose()

    _run(run())
    checked, bad, why = result
    if bad is not None:
        err.print(f"audit log BROKEN at entry {bad}: {why} ({checked} entries read)", markup=False)
        raise typer.Exit(1)
    console.print(f"audit log intact: {checked} entries")


def _with_engine(settings: Settings, work: object) -> None:
    """Run `work(engine)` on a fresh engine, disposed after; errors of the app print as one line, exit 1."""
    from app.persistence.db import make_engine

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            await work(engine)  # type: ignore[operator]
        finally:
            await engine.dispose()

    _run(run())


@keys_cli.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="who uses the key: the actor in the audit trail")],
    scope: Annotated[str, typer.Option("--scope", help="comma-separated: treasury,ops,approver,ingest,feed,admin")],
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from app.access import create_key, parse_scopes

    settings = _settings(ctx)
    _upgrade(settings)
    try:
        scopes = parse_scopes(scope)
    except SettleError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None

    async def work(engine: object) -> None:
        key = await create_key(engine, name=name, scopes=scopes, actor="cli")  # type: ignore[arg-type]
        console.print(key, highlight=False, markup=False, soft_wrap=True)
        err.print(f"key {name!r} created with scopes {', '.join(scopes)}; it is not shown again",
                  highlight=False, markup=False)

    _with_engine(settings, work)


@keys_cli.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every key: name, prefix, scopes, created, revoked."""
    from app.access import list_keys

    settings = _settings(ctx)
    _upgrade(settings)

    async def work(engine: object) -> None:
        for k in await list_keys(engine):  # type: ignore[arg-type]
            state = f"revoked {k['revoked_at'].isoformat()}" if k["revoked_at"] else "active"
            console.print(f"{k['name']}\t{k['prefix']}...\t{','.join(k['scopes'])}\t"
                          f"created {k['created_at'].isoformat()}\t{state}", highlight=False, markup=False)

    _with_engine(settings, work)


@keys_cli.command("revoke")
def keys_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key: it stops working at once; its name stays taken and in the audit trail."""
    from app.access import revoke_key

    settings = _settings(ctx)
    _upgrade(settings)

    async def work(engine: object) -> None:
        await revoke_key(engine, name, actor="cli")  # type: ignore[arg-type]
        console.print(f"key {name!r} revoked", highlight=False, markup=False)

    _with_engine(settings, work)


def main() -> None:
    cli()
