"""The `settle` command line."""

from __future__ import annotations

import asyncio
import functools
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.errors import SettleError
from app.settings import ChainConfig, Settings, load_settings

if TYPE_CHECKING:
    from app.supervision import Supervisor

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
console = Console(soft_wrap=True)  # lines are not wrapped at 80 columns when the output is not a terminal
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settle.toml path")]


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@cli.callback()
def _root(ctx: typer.Context, config: ConfigOpt = None) -> None:
    try:
        ctx.obj = load_settings(config)
    except SettleError as exc:
        err.print(str(exc), style="red", highlight=False, markup=False)  # `[a-z]` in a message is not markup
        raise typer.Exit(2) from None
    from app.logs import configure_logging

    configure_logging(ctx.obj)


def _upgrade(settings: Settings) -> None:
    """Commands that write bring the schema up to date first (as `settle db upgrade`)."""
    from sqlalchemy.exc import OperationalError

    from app.persistence.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except OperationalError as exc:
        _cannot_open(settings, exc)


def _require_schema(settings: Settings) -> None:
    """Commands that only read leave the schema alone: on an old or empty database they say what to run."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from app.persistence.migrate import is_current

    try:
        current = is_current(settings.database_url)
    except OperationalError as exc:
        _cannot_open(settings, exc)
    if not current:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        err.print(f"the database {shown} is not at the latest schema: run `settle db upgrade` first",
                  highlight=False, markup=False)
        raise typer.Exit(2)


def _cannot_open(settings: Settings, exc: Exception) -> NoReturn:
    from sqlalchemy.engine import make_url

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    err.print(f"error: cannot open the database {shown}: {str(exc).splitlines()[0]}", highlight=False, markup=False)
    raise typer.Exit(1)


def _chains_to_use(settings: Settings, name: str | None) -> list:
    """`--chain NAME`, else every configured chain; none is an error naming where the configuration was read."""
    try:
        chains = [settings.chain(name)] if name else settings.chains
    except SettleError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    if not chains:
        err.print(f"no chains configured ({settings.config_source()})", highlight=False, markup=False)
        raise typer.Exit(2)
    return chains


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """A table on a terminal; whole rows as tab-separated values otherwise (cron, CI, pipes): nothing cut."""
    if console.is_terminal:
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for row in [headers, *rows]:
        typer.echo("\t".join(" ".join(cell.split()) for cell in row))


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
    from app.errors import WatcherLocked
    from app.indexer import index_chain, index_chains, tune_gc_for_indexing
    from app.persistence.db import make_engine
    from app.supervision import watcher_loop

    settings = _settings(ctx)
    chains = _chains_to_use(settings, chain)
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
                if once:
                    await index_chains(settings, engine, chains, once=once, stop=stop, on_progress=on_progress)
                else:  # following: whatever escapes a watcher is logged, counted and retried with backoff
                    supervisor, locked = _supervisor(settings), []

                    async def follow(c: ChainConfig) -> None:
                        try:
                            await index_chain(settings, engine, c, once=False, stop=stop, on_progress=on_progress)
                        except WatcherLocked as exc:  # another indexer runs: say so and stop, do not retry
                            locked.append(exc)
                            stop.set()

                    await asyncio.gather(*(supervisor.run_forever(watcher_loop(c.name), functools.partial(
                        follow, c), stop) for c in chains))
                    if locked:
                        raise locked[0]
            finally:
                await engine.dispose()

    _run(run())
    if once:
        console.print("caught up")


def _supervisor(settings: Settings) -> Supervisor:
    from app.supervision import Backoff, Supervisor

    cfg = settings.supervision
    return Supervisor(Backoff(cfg.backoff_initial_seconds, cfg.backoff_max_seconds),
                      stale_intervals=cfg.stale_intervals, stale_min_seconds=cfg.stale_min_seconds)


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
    _chains_to_use(settings, None)
    _require_schema(settings)

    rows: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            rows.extend(await _chains(settings, engine))
        finally:
            await engine.dispose()

    _run(run())
    _table(["chain", "id", "state", "head", "indexed", "safe", "finalized", "lag", "last error"],
           [[c.name, str(c.chain_id), c.state, *(str(v) if v is not None else "-" for v in (
               c.head, c.indexed, c.safe, c.finalized, c.lag)), c.alert or c.last_error or ""] for c in rows])


@chains_cli.command("allow-deep-reorg")
def allow_deep_reorg(ctx: typer.Context, name: str) -> None:
    """Incident response: let the watcher of a chain in `alert` roll back below finality (recorded as deep)."""
    from app.persistence.db import make_engine
    from app.persistence.watcher_store import SqlWatcherStore

    settings = _settings(ctx)
    chain = _chains_to_use(settings, name)[0]
    _upgrade(settings)

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
    (chain,) = _chains_to_use(settings, name)
    _upgrade(settings)

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
    """Compare indexed balances with balanceOf at the indexed block; store and print the differences. Exits 1
    when any pair differs (for cron and CI)."""
    from app.balance_check import check_chain
    from app.persistence.db import make_engine
    from app.settlement.amounts import format_units

    settings = _settings(ctx)
    chains = _chains_to_use(settings, chain)
    _upgrade(settings)
    results: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            for c in chains:
                results.extend((c, r) for r in await check_chain(settings, engine, c))
        finally:
            await engine.dispose()

    _run(run())
    rows = []
    for c, r in results:
        decimals = next(t.decimals for t in settings.tokens_on(c) if t.address == r.token)
        rows.append([c.name, r.wallet, r.symbol, str(r.block_number), format_units(r.indexed, decimals),
                     format_units(r.onchain, decimals), format_units(r.difference, decimals)])
    _table(["chain", "wallet", "token", "block", "indexed", "balanceOf", "difference"], rows)
    if differing := sum(1 for _, r in results if r.difference):
        err.print(f"{differing} difference{'s' if differing > 1 else ''} between indexed balances and balanceOf",
                  highlight=False, markup=False)
        raise typer.Exit(1)


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
    from app.settlement.amounts import is_digits

    settings = _settings(ctx)
    _upgrade(settings)
    with file.open(newline="") as handle:
        rows = [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)]
    for row in rows:
        if is_digits(row.get("log_index")):  # ASCII only: anything else is refused by name below
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


def _rebuild_item(what: str, item: tuple) -> str:
    """One difference found by `recon --check-rebuild`, readable (record keys as source/external id)."""
    if what == "classification":
        return f"transfer {item[0]} {item[1]}"
    *kind, transfer_ids, record_keys = item
    records = [f"{source}/{external_id}" for source, external_id in record_keys]
    return " ".join([*kind, f"transfers {list(transfer_ids)} records {records}"])


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
    from app.rebuild import rebuild_differences
    from app.reconciler import reconcile_once

    settings = _settings(ctx)
    _upgrade(settings)
    differs: list[bool] = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            if check_rebuild:
                diff = await rebuild_differences(settings, engine)
                for what, (only_now, only_scratch) in (("match", diff.matches), ("break", diff.breaks),
                                                       ("classification", diff.classifications)):
                    for label, items in (("only in the current state", only_now), ("only from scratch", only_scratch)):
                        for item in sorted(items, key=repr):
                            console.print(f"{what} {label}: {_rebuild_item(what, item)}", soft_wrap=True)
                console.print(f"rebuild differences: {diff.count} (matches {sum(map(len, diff.matches))}, breaks "
                              f"{sum(map(len, diff.breaks))}, classifications {sum(map(len, diff.classifications))})")
                differs.append(diff.count > 0)
                return
            first = [full]

            async def one_pass() -> None:
                s = await reconcile_once(settings, engine, full=first[0])
                first[0] = False
                console.print(f"{'full' if s.full else 'incremental'} pass: matched {s.matched}, unmatched by reorg"
                              f" {s.unmatched_by_reorg}, breaks opened "
                              f"{len(s.opened)}, closed {s.closed}, classified {s.classified}")

            if once:
                await one_pass()
                return
            supervisor = _supervisor(settings)  # following: a failed pass is logged, counted and retried
            while True:
                if await supervisor.attempt("reconciler", one_pass):
                    await asyncio.sleep(interval)
                else:
                    await supervisor.pause("reconciler", asyncio.Event())
        finally:
            await engine.dispose()

    _run(run())
    if differs and differs[0]:
        raise typer.Exit(1)


@audit_cli.command("verify")
def audit_verify(
    ctx: typer.Context,
    head: Annotated[str | None, typer.Option("--head", metavar="SEQ:HASH[:SIGNATURE]",
                                             help="a head printed earlier by `settle audit head` and kept outside "
                                                  "the database: the log must still reach it")] = None,
) -> None:
    """Check the audit log's hash chain up to its head (and to an anchored `--head`); name the first bad entry."""
    from app.persistence import audit
    from app.persistence.db import make_engine

    settings = _settings(ctx)
    anchor = _anchor(settings, head) if head else None
    _require_schema(settings)
    result: list = []

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                result.extend(await audit.verify(conn, anchor=anchor))
        finally:
            await engine.dispose()

    _run(run())
    checked, bad, why = result
    if bad is not None:
        err.print(f"audit log BROKEN at entry {bad}: {why} ({checked} entries read)", markup=False, highlight=False)
        raise typer.Exit(1)
    reaches = f"; it reaches the anchored head (entry {anchor.seq})" if anchor else ""
    console.print(f"audit log intact: {checked} entries{reaches}", markup=False, highlight=False)


def _anchor(settings: Settings, text: str) -> object:
    """`--head SEQ:HASH[:SIGNATURE]`; a signature must verify with `audit.head_key`."""
    from app.persistence import audit

    try:
        head, signature = audit.parse_anchor(text)
    except ValueError as exc:
        err.print(f"error: --head: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    if signature is not None:
        if settings.audit.head_key is None:
            err.print("error: --head carries a signature but no audit.head_key is configured to check it",
                      highlight=False, markup=False)
            raise typer.Exit(2)
        if not audit.signature_holds(head, signature, settings.audit.head_key.get_secret_value()):
            err.print(f"audit head {head.anchor} NOT AUTHENTIC: its signature does not verify with audit.head_key "
                      "(the head was altered, or signed with another key)", highlight=False, markup=False)
            raise typer.Exit(1)
    return head


@audit_cli.command("head")
def audit_head(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Print the log's head (sequence, hash, time), signed with audit.head_key when one is configured: keep it
    outside the database, then `settle audit verify --head SEQ:HASH:SIGNATURE` catches a log cut back behind it."""
    import json

    from app.persistence import audit

    settings = _settings(ctx)
    _require_schema(settings)
    found: list = []

    async def work(engine: object) -> None:
        async with engine.connect() as conn:  # type: ignore[attr-defined]
            found.append(await audit.read_head(conn))

    _with_engine(settings, work)
    head = found[0]
    if head is None:
        err.print("error: the audit head (table audit_head) is missing: run `settle audit verify`", markup=False)
        raise typer.Exit(1)
    key = settings.audit.head_key
    signature = audit.sign_head(head, key.get_secret_value()) if key else None
    anchor = f"{head.anchor}:{signature}" if signature else head.anchor
    at = head.at.isoformat() if head.at else None
    if as_json:
        typer.echo(json.dumps({"sequence": head.seq, "hash": head.hash, "entry_id": head.entry_id, "at": at,
                               "signature": signature, "anchor": anchor}))
        return
    for label, value in (("sequence", head.seq), ("hash", head.hash), ("time", at or "-"),
                         ("signature", signature or "unsigned (no audit.head_key configured)"), ("anchor", anchor)):
        typer.echo(f"{label}\t{value}")


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
    scope: Annotated[list[str], typer.Option("--scope", help="repeat it or comma-separate: treasury,ops,approver,"
                                                             "ingest,feed,admin")],
    person: Annotated[str | None, typer.Option("--person", help="who holds the key (four-eyes compares persons); "
                                                                "default: the name")] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from app.access import create_key, parse_scopes

    settings = _settings(ctx)
    _upgrade(settings)
    try:
        scopes = parse_scopes(",".join(scope))
    except SettleError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None

    async def work(engine: object) -> None:
        key = await create_key(engine, name=name, scopes=scopes, actor="cli",  # type: ignore[arg-type]
                               person=person)
        console.print(key, highlight=False, markup=False, soft_wrap=True)
        err.print(f"key {name!r} created with scopes {', '.join(scopes)}; it is not shown again",
                  highlight=False, markup=False)

    _with_engine(settings, work)


@keys_cli.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every key: name, prefix, scopes, created, revoked."""
    from app.access import list_keys

    settings = _settings(ctx)
    _require_schema(settings)

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
