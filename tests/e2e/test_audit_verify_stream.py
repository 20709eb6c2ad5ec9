"""GET /v1/audit/verify walks the chain in chunks and streams NDJSON: a progress line per chunk, then the verdict;
a deletion or an edit at a chunk boundary is still caught (the link is carried from chunk to chunk)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence import audit
from app.settings import Settings
from tests.support.harness import bearer

CHUNK = 50


async def _verify(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[list[dict], dict]:
    reply = await client.get("/v1/audit/verify", headers=headers)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in reply.text.splitlines()]
    return lines[:-1], lines[-1]


@pytest.mark.parametrize("tamper", ["delete", "edit"])
async def test_audit_verify_streams_progress_per_chunk_and_catches_a_change_at_a_chunk_boundary(
    engine: AsyncEngine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    monkeypatch.setattr(audit, "VERIFY_CHUNK", CHUNK)
    headers = await bearer(engine, "admin")  # one entry: the key's creation
    async with engine.begin() as conn:
        await audit.append_many(conn, [{"actor": "test", "action": "test.entry", "entity": f"t:{i}",
                                        "after": {"i": i}} for i in range(4 * CHUNK - 1)], at=datetime.now(UTC))
    app = create_app(Settings(database_url=database_url, data_dir=tmp_path), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        progress, verdict = await _verify(client, headers)
        async with engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(text("select id from audit_log order by id"))]
            target = ids[2 * CHUNK]  # the first entry of the third chunk
            if tamper == "delete":
                await conn.execute(text("delete from audit_log where id = :id"), {"id": target})
            else:
                await conn.execute(text("update audit_log set actor = 'mallory' where id = :id"), {"id": target})
        _, broken = await _verify(client, headers)
    assert [p["checked"] for p in progress] == [CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]
    assert [p["through_entry"] for p in progress] == [ids[CHUNK - 1], ids[2 * CHUNK - 1], ids[3 * CHUNK - 1],
                                                      ids[-1]]
    assert verdict == {"intact": True, "entries": 4 * CHUNK, "first_bad_entry": None, "reason": None}
    if tamper == "delete":
        assert broken["first_bad_entry"] == ids[2 * CHUNK + 1] and "previous hash" in broken["reason"]
    else:
        assert broken["first_bad_entry"] == target and "edited" in broken["reason"]
    assert broken["intact"] is False and broken["entries"] == 2 * CHUNK + 1
