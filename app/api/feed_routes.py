"""/v1/feed: what the core (fiat) reconciliation pulls. Scope `feed`.

A reader keeps the `next_after` of each page and asks for the events after it. It sees every event once, in
`seq` order, and never has one appear behind a `seq` it has passed (see `app.persistence.feed` for why). Replaying
from 0 rebuilds the current matches and breaks. An event's object is as it was when the event happened: the
transfer's state and block at that point, the record version ingested, the match as created (or as removed), the
break as opened (or as resolved, with that resolution); a page read twice is the same page."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.access import Scope
from app.api.auth import AUTH, PROBLEMS, require
from app.api.feed_schemas import FeedPage
from app.api.schemas import amount_out, record_keys_out, token_ref
from app.errors import BadRequest
from app.persistence import feed
from app.persistence.feed import COLUMNS as C
from app.settings import Settings

router = APIRouter(prefix="/v1", responses=PROBLEMS)


@router.get("/feed", dependencies=[Depends(require(Scope.FEED))], response_model=FeedPage,
            responses={**AUTH, 200: {"model": FeedPage, "description": "the events after `after`, in order"}})
async def read_feed(
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the last seq already read (0: from the start)")]
    = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    types: Annotated[str | None, Query(max_length=400, description="comma-separated event types to keep, e.g. "
                                                                    "`match.created,match.removed`")] = None,
) -> Response:
    """The events after `after` in `seq` order, each with its object as it was then (see the feed in the
    README); keep `next_after` and pass it as `after`."""
    wanted = _types(types)
    async with request.app.state.engine.connect() as conn:
        rows, next_after = await feed.page(conn, after=after, limit=limit, types=wanted)
    render = _Renderer(request.app.state.settings)
    events = [render.event(r) for r in rows]
    # UTC as `Z`, as the rest of the API writes it
    return Response(orjson.dumps({"events": events, "next_after": next_after}, option=orjson.OPT_UTC_Z),
                    media_type="application/json")


def _types(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    wanted = [t.strip() for t in value.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(feed.TYPES))
    if unknown:
        raise BadRequest("types", f"unknown event type(s) {unknown}; known: {list(feed.TYPES)}")
    return wanted


class _Renderer:
    """Objects as they were at each event, from the event's own columns and the entity's unchanging ones."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._render = {"transfer": self.transfer, "record": self.record, "match": self.match, "break": self.break_}

    def event(self, r: Any) -> dict[str, Any]:
        type_, entity_id, seq = r[C.type], r[C.entity_id], r[C.seq]
        return {"seq": seq, "id": f"{type_}:{entity_id}:{seq}", "type": type_, "occurred_at": r[C.occurred_at],
                "recorded_at": r[C.recorded_at], "object": self._render[type_.split(".", 1)[0]](r)}

    def _token(self, chain_id: int | None, address: str) -> dict[str, Any]:
        return token_ref(address, self.settings.token_at(chain_id, address))

    def transfer(self, r: Any) -> dict[str, Any]:
        """The transfer in the block the event names; an orphaning names the block it left (time unknown)."""
        token = self._token(r[C.t_chain_id], r[C.t_token])
        chain = self.settings.chain_by_id(r[C.t_chain_id])
        return {"id": r[C.entity_id], "chain": chain.name if chain else str(r[C.t_chain_id]),
                "chain_id": r[C.t_chain_id], "token": token, "sender": r[C.t_sender],
                "recipient": r[C.t_recipient], **amount_out(r[C.t_amount], token["decimals"]),
                "tx_hash": r[C.t_tx_hash], "log_index": r[C.t_log_index],
                "block_number": r[C.block_number], "block_hash": r[C.block_hash],
                "block_time": None if r[C.state] == "orphaned" else r[C.occurred_at], "state": r[C.state]}

    def record(self, r: Any) -> dict[str, Any]:
        body = orjson.loads(r[C.v_body])
        token = self._token(body["chain_id"], body["token"])
        return {**body, "token": token, **amount_out(int(body["amount"]), token["decimals"]),
                "ingested_by": r[C.v_actor], "ingested_at": r[C.v_ingested_at]}

    def match(self, r: Any) -> dict[str, Any]:
        removed = r[C.type] == "match.removed"
        return {"id": r[C.entity_id], "rule": r[C.m_rule], "rule_version": r[C.m_rule_version],
                "transfer_ids": orjson.loads(r[C.m_transfer_ids]),
                "record_keys": record_keys_out(r[C.m_record_keys]),
                "created_at": r[C.m_created_at], "created_by": r[C.m_created_by],
                "removed_at": r[C.m_removed_at] if removed else None,
                "removed_by": r[C.m_removed_by] if removed else None,
                "removed_reason": r[C.m_removed_reason] if removed else None}

    def break_(self, r: Any) -> dict[str, Any]:
        resolved = r[C.type] == "break.resolved"
        token = self._token(r[C.b_chain_id], r[C.b_token]) if r[C.b_token] else None
        amount = amount_out(r[C.b_amount] if token else None, token["decimals"] if token else None)
        return {"id": r[C.entity_id], "type": r[C.b_type], "status": r[C.state], "token": token, **amount,
                "since": r[C.b_since], "opened_at": r[C.b_opened_at],
                "resolved_at": r[C.occurred_at] if resolved else None,
                "resolution": orjson.loads(r[C.detail]) if resolved and r[C.detail] else None,
                "transfer_ids": orjson.loads(r[C.b_transfer_ids]),
                "record_keys": record_keys_out(r[C.b_record_keys]),
                "facts": orjson.loads(r[C.b_facts])}
