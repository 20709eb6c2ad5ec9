"""Set-based matching for full passes: the pairs the pure core would make first, found and written in SQL.

A full pass over a million transfers spends its time moving rows, not deciding: almost every record pairs with
exactly one transfer by its tx hash or its deposit address. Those pairs are found here with one join per rule and
written with `INSERT ... SELECT`; the pure core (`app.settlement.matching`) then decides what is left.

Why the outcome is the same as the core's alone: each rule's candidate edges are counted over a *superset* of the
core's edges (without the our-wallet check, the people-unmatched exclusions, the tolerance on SQLite, and with a
millisecond margin on the SQLite time window), and a pair is written only when it is the single edge of its record
and of its transfer *and* it passes the core's exact test. Such a pair is an isolated edge in the core's graph
too, which the core's unique-pairing step matches first whatever else there is; removing it changes no other
decision. A deposit-address pair is further written only if its transfer is not a tx-hash candidate of any free
record (the core's first rule could claim or break it). `tests/integration/test_recon_equivalence.py` checks
that a full pass with and without this step gives the same matches and breaks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence import feed
from app.persistence.types import ExactInt, UTCDateTime
from app.settlement.matching import RULE_VERSION

MAX_LISTED = 1_000
AMOUNT_PARAM = "tol_amt"  # parameters named so are amounts: bound as ExactInt (NUMERIC(78,0) / decimal text)

_FREE_T = """NOT EXISTS (SELECT 1 FROM match_links ml WHERE ml.transfer_id = {t}.id AND ml.active)
    AND NOT EXISTS (SELECT 1 FROM transfer_classifications tc WHERE tc.transfer_id = {t}.id
                    AND tc.revoked_at IS NULL)"""
_FREE_R = """{r}.status != 'cancelled' AND NOT EXISTS (SELECT 1 FROM match_links ml
    WHERE ml.record_source = {r}.source AND ml.record_external_id = {r}.external_id AND ml.active)"""
_UNMATCHED_BY_PEOPLE_T = """NOT EXISTS (SELECT 1 FROM match_links x JOIN matches m ON m.id = x.match_id
    WHERE x.transfer_id = t.id AND m.removed_by IS NOT NULL AND m.removed_by != :system)"""
_UNMATCHED_BY_PEOPLE_R = """NOT EXISTS (SELECT 1 FROM match_links x JOIN matches m ON m.id = x.match_id
    WHERE x.record_source = r.source AND x.record_external_id = r.external_id
    AND m.removed_by IS NOT NULL AND m.removed_by != :system)"""


async def foreign_record_wallets(conn: AsyncConnection, ours: frozenset[tuple[int, str]]) -> set[tuple[int, str]]:
    """(chain id, wallet) of records whose wallet is not one of ours (the core never pairs those)."""
    rows = await conn.execute(text("SELECT DISTINCT chain_id, wallet FROM records"))
    return {(int(c), w) for c, w in rows if (int(c), w) not in ours}


async def match_unique_pairs(conn: AsyncConnection, *, system: str, now: datetime, window: timedelta,
                             tolerance: Mapping[tuple[int, str], int], finalized_only: frozenset[int],
                             foreign: set[tuple[int, str]], excluded: frozenset[tuple[int, tuple[str, str]]],
                             timings: dict[str, float] | None = None) -> list[tuple[str, int, int]]:
    """Write the tx-hash pairs, then the deposit-address pairs. Returns (rule, first match id, last match id) per
    rule that wrote any. The caller audits them and holds the reconciler lock."""
    pg = conn.dialect.name == "postgresql"
    if pg:  # explicit match ids below: keep concurrent manual matches from taking one meanwhile
        await conn.exec_driver_sql("LOCK TABLE matches IN SHARE ROW EXCLUSIVE MODE")
        # the candidate counts sort and hash a million edges: in memory, not in temporary files (this
        # transaction only)
        await conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    for table in ("recon_pairs", "recon_foreign"):
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    await conn.exec_driver_sql("CREATE TEMPORARY TABLE recon_pairs (match_id BIGINT PRIMARY KEY, tid BIGINT NOT "
                               "NULL, rid BIGINT NOT NULL, block_hash TEXT, source TEXT, external_id TEXT, "
                               "record_keys TEXT, facts TEXT)")
    await conn.exec_driver_sql("CREATE TEMPORARY TABLE recon_foreign (chain_id BIGINT NOT NULL, wallet TEXT NOT "
                               "NULL, PRIMARY KEY (chain_id, wallet))")
    if foreign:
        await conn.execute(text("INSERT INTO recon_foreign (chain_id, wallet) VALUES (:c, :w)"),
                           [{"c": c, "w": w} for c, w in sorted(foreign)])
    params: dict[str, object] = {"system": system}
    tol = {token: amount for token, amount in tolerance.items() if amount}  # (chain id, address): base units
    params |= {f"tol_chain{i}": chain_id for i, (chain_id, _) in enumerate(sorted(tol))}
    params |= {f"tol_tok{i}": token for i, (_, token) in enumerate(sorted(tol))}
    params |= {f"{AMOUNT_PARAM}{i}": tol[token] for i, token in enumerate(sorted(tol))}
    tol_token = [f"(r.chain_id = :tol_chain{i} AND r.token = :tol_tok{i})" for i in range(len(tol))]
    # typed NUMERIC(78,0): an untyped int parameter is inferred as integer (int4) on PostgreSQL
    tol_case = ("CASE " + " ".join(f"WHEN {where} THEN CAST(:{AMOUNT_PARAM}{i} AS NUMERIC(78, 0))"
                                   for i, where in enumerate(tol_token)) + " ELSE 0 END") if tol else "0"
    if pg:
        amount_superset = f"abs(t.amount - r.amount) <= {tol_case}" if tol else "t.amount = r.amount"
        amount_exact = amount_superset
    else:  # decimal text: exact equality only; with a tolerance, count every amount as a candidate
        amount_superset = " OR ".join([*tol_token, "t.amount = r.amount"])
        amount_exact = "t.amount = r.amount"
    matchable = "(t.state = 'finalized' OR t.state = 'confirmed'" + (
        " AND t.chain_id NOT IN (" + ", ".join(str(int(c)) for c in sorted(finalized_only)) + "))"
        if finalized_only else ")")
    not_foreign = ("NOT EXISTS (SELECT 1 FROM recon_foreign f WHERE f.chain_id = r.chain_id AND f.wallet = r.wallet)"
                   if foreign else "1 = 1")
    exact_common = f"({amount_exact}) AND ({not_foreign}) AND {_not_unmatched_by_people(excluded, params)}"
    out = []

    tx_edges = f"""
        SELECT r.id AS rid, t.id AS tid, {_carried(pg)},
               CASE WHEN r.kind IN ('deposit', 'withdrawal') AND {exact_common} THEN 1 ELSE 0 END AS ok
        FROM records r JOIN transfers t ON t.chain_id = r.chain_id AND t.tx_hash = r.tx_hash
             AND (r.log_index IS NULL OR t.log_index = r.log_index)
        WHERE r.tx_hash IS NOT NULL AND {_FREE_R.format(r="r")} AND {matchable} AND {_FREE_T.format(t="t")}
          AND t.token = r.token
          AND CASE WHEN r.kind = 'deposit' THEN t.recipient ELSE t.sender END = r.wallet
          AND (r.counterparty IS NULL
               OR CASE WHEN r.kind = 'deposit' THEN t.sender ELSE t.recipient END = r.counterparty)
          AND ({amount_superset})"""
    started = time.perf_counter()
    out += await _write(conn, "tx_hash", tx_edges, params, system, now, pg)
    if timings is not None:
        timings["bulk_tx_hash"] = time.perf_counter() - started
        started = time.perf_counter()

    w = window.total_seconds()
    if pg:
        params["window"] = window
        window_superset = ("t.block_time BETWEEN r.created_at - CAST(:window AS INTERVAL) "
                           "AND r.created_at + CAST(:window AS INTERVAL)")
        window_exact = "1 = 1"
    else:
        params |= {"w_loose": w + 0.001, "w_strict": w - 0.001}
        gap = "abs(julianday(t.block_time) - julianday(r.created_at)) * 86400.0"
        window_superset, window_exact = f"{gap} <= :w_loose", f"{gap} <= :w_strict"
    tx_candidate_of_free_record = f"""EXISTS (SELECT 1 FROM records r2 WHERE r2.chain_id = t.chain_id
        AND r2.tx_hash = t.tx_hash AND (r2.log_index IS NULL OR r2.log_index = t.log_index)
        AND {_FREE_R.format(r="r2")})"""
    deposit_edges = f"""
        SELECT r.id AS rid, t.id AS tid, {_carried(pg)},
               CASE WHEN {exact_common} AND {window_exact} AND NOT {tx_candidate_of_free_record}
                    THEN 1 ELSE 0 END AS ok
        FROM records r JOIN transfers t ON t.chain_id = r.chain_id AND t.token = r.token AND t.recipient = r.wallet
             {"AND t.amount = r.amount" if not tol else ""}
        WHERE r.kind = 'deposit' AND r.tx_hash IS NULL AND {_FREE_R.format(r="r")} AND {matchable}
          AND {_FREE_T.format(t="t")} AND (r.counterparty IS NULL OR t.sender = r.counterparty)
          AND ({amount_superset}) AND {window_superset}"""
    out += await _write(conn, "deposit_address", deposit_edges, params, system, now, pg)
    if timings is not None:
        timings["bulk_deposit_address"] = time.perf_counter() - started
    for table in ("recon_pairs", "recon_foreign"):
        await conn.exec_driver_sql(f"DROP TABLE {table}")
    return out


def _not_unmatched_by_people(excluded: frozenset[tuple[int, tuple[str, str]]], params: dict[str, object]) -> str:
    """Leave to the core every transfer and record a person once unmatched (it knows the exact pairs)."""
    if not excluded:
        return "1 = 1"
    if len(excluded) > MAX_LISTED:
        return f"{_UNMATCHED_BY_PEOPLE_T} AND {_UNMATCHED_BY_PEOPLE_R}"
    ids = sorted({i for i, _ in excluded})
    keys = sorted({k for _, k in excluded})
    params |= {f"ex_t{i}": v for i, v in enumerate(ids)}
    params |= {f"ex_s{i}": k[0] for i, k in enumerate(keys)} | {f"ex_e{i}": k[1] for i, k in enumerate(keys)}
    not_t = "t.id NOT IN (" + ", ".join(f":ex_t{i}" for i in range(len(ids))) + ")"
    not_r = " AND ".join(f"NOT (r.source = :ex_s{i} AND r.external_id = :ex_e{i})" for i in range(len(keys)))
    return f"{not_t} AND {not_r}"


def _carried(pg: bool) -> str:
    """What a match row needs from its transfer and record, selected with each candidate edge (so the writes
    need not join the big tables again): the block hash, the record key, and the facts compared, as JSON."""
    if pg:
        keys = "json_build_array(json_build_array(r.source, r.external_id))::text"
        facts = ("json_build_object('record', json_build_array(r.token, r.wallet, r.counterparty, r.amount::text, "
                 "r.tx_hash, r.log_index), 'transfer', json_build_array(t.token, t.sender, t.recipient, "
                 "t.amount::text, t.tx_hash, t.log_index))::text")
    else:
        keys = "json_array(json_array(r.source, r.external_id))"
        facts = ("json_object('record', json_array(r.token, r.wallet, r.counterparty, r.amount, r.tx_hash, "
                 "r.log_index), 'transfer', json_array(t.token, t.sender, t.recipient, t.amount, t.tx_hash, "
                 "t.log_index))")
    return (f"t.block_hash AS block_hash, r.source AS source, r.external_id AS external_id, "
            f"{keys} AS record_keys, {facts} AS facts")


async def _write(conn: AsyncConnection, rule: str, edges: str, params: dict[str, object], system: str,
                 now: datetime, pg: bool) -> list[tuple[str, int, int]]:
    await conn.exec_driver_sql("DELETE FROM recon_pairs")
    pairs = text(f"""
        INSERT INTO recon_pairs (match_id, tid, rid, block_hash, source, external_id, record_keys, facts)
        SELECT row_number() OVER (ORDER BY tid), tid, rid, block_hash, source, external_id, record_keys,
               facts FROM (
            SELECT e.*, count(*) OVER (PARTITION BY rid) AS per_record,
                   count(*) OVER (PARTITION BY tid) AS per_transfer
            FROM ({edges}) e) c
        WHERE ok = 1 AND per_record = 1 AND per_transfer = 1""")
    amounts = [bindparam(k, type_=ExactInt()) for k in params if k.startswith(AMOUNT_PARAM) and f":{k} " in edges]
    await conn.execute(pairs.bindparams(*amounts), params)
    count = int(await conn.scalar(text("SELECT count(*) FROM recon_pairs")) or 0)
    if not count:
        return []
    at = "CAST(:now AS TIMESTAMPTZ)" if pg else ":now"
    values = {"rule": rule, "version": RULE_VERSION, "system": system, "now": now}
    if pg:
        base = await _reserve_match_ids(conn, count)
        values["base"] = base
    stmt = text(f"""
        INSERT INTO matches ({"id, " if pg else ""}rule, rule_version, transfer_ids, record_keys, candidates, facts,
                             created_at, created_by)
        SELECT {":base + match_id, " if pg else ""}:rule, :version, '[' || tid || ']', record_keys, '[' || tid || ']',
               facts, {at}, :system
        FROM recon_pairs ORDER BY match_id""").bindparams(bindparam("now", type_=UTCDateTime()))
    await conn.execute(stmt, values)
    if not pg:
        base = await _sqlite_assigned_base(conn, count)
    yes = "true" if pg else "1"
    await conn.execute(text(f"""
        INSERT INTO match_links (match_id, transfer_id, block_hash, record_source, record_external_id, active)
        SELECT :base + match_id, tid, block_hash, NULL, NULL, {yes} FROM recon_pairs
        UNION ALL SELECT :base + match_id, NULL, NULL, source, external_id, {yes} FROM recon_pairs"""),
        {"base": base})
    feed.stage_matches(conn, base + 1, base + count)
    return [(rule, base + 1, base + count)]


async def _reserve_match_ids(conn: AsyncConnection, count: int) -> int:
    """PostgreSQL: `count` consecutive ids from the matches sequence; returns the one before the first. The table
    lock `match_unique_pairs` took (until commit; reads go on) keeps every other insert into matches out, and
    every other writer draws its ids in its INSERT (after that lock), so none can take an id of the range."""
    first = int(await conn.scalar(text("SELECT nextval(pg_get_serial_sequence('matches', 'id'))")))
    await conn.execute(text("SELECT setval(pg_get_serial_sequence('matches', 'id'), :last)"),
                       {"last": first + count - 1})
    return first - 1


async def _sqlite_assigned_base(conn: AsyncConnection, count: int) -> int:
    """SQLite: the ids the database gave the `count` rows just inserted in match_id order (the writer holds the
    database's write lock, so they are consecutive, ending at last_insert_rowid()); returns the one before the
    first. Checked at both ends: never a silently shifted id."""
    last = int(await conn.scalar(text("SELECT last_insert_rowid()")))
    base = last - count
    ends = dict((await conn.execute(text(
        "SELECT m.id - :base, m.transfer_ids FROM matches m WHERE m.id IN (:first, :last)"),
        {"base": base, "first": base + 1, "last": last})).all())
    pairs = dict((await conn.execute(text(
        "SELECT match_id, '[' || tid || ']' FROM recon_pairs WHERE match_id IN (1, :count)"), {"count": count})).all())
    if ends != pairs:
        raise RuntimeError(f"matches ids not consecutive after a bulk insert: {ends} != {pairs}")
    return base
