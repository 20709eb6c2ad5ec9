"""`settle recon --check-rebuild` compares classifications and open breaks too, not only matches: a state left by
the old incremental logic (0.1 USDT paid out with no record, classified dust, no break) is reported, on SQLite
and PostgreSQL, by the function and by the command (exit 1)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import feed, recon_repo
from app.rebuild import rebuild_differences
from app.reconciler import reconcile_once
from tests.integration.test_recon_money import (
    DEPOSIT,
    HOT,
    NOW,
    OUTSIDER,
    PAYER,
    USDT,
    _settings,
    load,
    record,
    transfer,
)
from tests.support.harness import write_toml

REPO = Path(__file__).resolve().parents[2]
TENTH = 100_000  # 0.1 USDT; the dust threshold is 0.5


async def _correct_state(database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    await load(engine, [transfer(10, USDT, TENTH, sender=HOT, recipient=OUTSIDER),  # paid, no record: a break
                        transfer(11, USDT, TENTH, sender=OUTSIDER, recipient=DEPOSIT, minutes=1),  # dust
                        transfer(12, USDT, 7 * 10**6, sender=PAYER, recipient=DEPOSIT, minutes=2)],
               [record("d12", USDT, 7 * 10**6, minutes=2)])
    await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW)


async def _diverge(engine: AsyncEngine) -> None:
    """What the old incremental pass left: transfer 10 classified dust and no break; and the reverse for 11 (an
    open break where a full pass classifies dust)."""
    async with feed.transaction(engine) as conn:
        (break_10,) = [b["id"] for b in await recon_repo.open_breaks(conn) if b["transfer_ids"] == "[10]"]
        for table in ("break_links", "break_events"):
            await conn.execute(text(f"DELETE FROM {table} WHERE break_id = :b"), {"b": break_10})
        await conn.execute(text("DELETE FROM feed_events WHERE type LIKE 'break.%' AND entity_id = :b"),
                           {"b": break_10})
        await conn.execute(text("DELETE FROM breaks WHERE id = :b"), {"b": break_10})
        await recon_repo.classify_many(conn, [(10, "dust")], actor="reconciler", at=NOW)
        await conn.execute(text("DELETE FROM transfer_classifications WHERE transfer_id = 11"))
        await recon_repo.open_breaks_many(conn, [{"type": "unmatched_transfer", "fingerprint": "old-11",
                                                  "transfer_ids": [11], "record_keys": [], "facts": {}}],
                                          actor="reconciler", at=NOW)


async def test_check_rebuild_reports_classifications_and_breaks_that_differ(database_url: str, engine: AsyncEngine,
                                                                           tmp_path: Path) -> None:
    settings = _settings(database_url, tmp_path)
    await _correct_state(database_url, engine, tmp_path)
    assert (await rebuild_differences(settings, engine, now=NOW)).count == 0
    await _diverge(engine)
    diff = await rebuild_differences(settings, engine, now=NOW)
    assert diff.matches == (set(), set())
    assert diff.classifications == ({(10, "dust")}, {(11, "dust")})
    assert diff.breaks == ({("unmatched_transfer", (11,), ())}, {("unmatched_transfer", (10,), ())})
    assert diff.count == 4


async def test_a_break_a_person_resolved_is_no_difference(database_url: str, engine: AsyncEngine,
                                                          tmp_path: Path) -> None:
    from app.resolutions import ReasonCode, classify

    settings = _settings(database_url, tmp_path)
    await _correct_state(database_url, engine, tmp_path)
    async with engine.connect() as conn:
        (break_10,) = [b["id"] for b in await recon_repo.open_breaks(conn) if b["transfer_ids"] == "[10]"]
    await classify(engine, break_10, reason=ReasonCode.GAS_TOP_UP, note="gas top-up", actor="alice")
    assert (await rebuild_differences(settings, engine, now=NOW + timedelta(minutes=1))).count == 0


async def test_the_command_prints_each_difference_and_exits_1(database_url: str, engine: AsyncEngine,
                                                             tmp_path: Path) -> None:
    settings = _settings(database_url, tmp_path)
    await _correct_state(database_url, engine, tmp_path)
    await _diverge(engine)
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                        chains=[c.model_dump(mode="json", exclude_defaults=True) for c in settings.chains],
                        tokens=[t.model_dump(mode="json", exclude_defaults=True) for t in settings.tokens],
                        wallets=[w.model_dump(mode="json", exclude_defaults=True) for w in settings.wallets])
    config.write_text(config.read_text() + '\n[recon.dust]\nUSDT = "0.5"\n')
    done = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "recon", "--check-rebuild"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = set(done.stdout.splitlines())
    assert "classification only in the current state: transfer 10 dust" in lines
    assert "break only from scratch: unmatched_transfer transfers [10] records []" in lines
    assert "rebuild differences: 4 (matches 0, breaks 2, classifications 2)" in lines
