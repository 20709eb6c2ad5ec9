"""The document's models of GET /v1/feed: an event carries its object as it was then. Documentation only: the
handler renders the page with orjson."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.api.break_schemas import BreakCore
from app.api.record_schemas import RecordCore
from app.api.schemas import RECORD_KEY_EXAMPLE, RecordKey, TokenRef, TransferAt, examples
from app.persistence import feed


class FeedRecord(RecordCore):
    """`record.ingested`: the version ingested."""

    token: TokenRef  # type: ignore[assignment]  # the feed names the token's symbol and decimals too
    amount: str | None = Field(description="decimal string in token units; null if the token is not configured")
    amount_base_units: str
    ingested_by: str = Field(description="the API key's name that sent this version")
    ingested_at: datetime


class FeedMatch(BaseModel):
    """`match.created` / `match.removed`: the match as created (the `removed_*` fields only on removal)."""

    id: int
    rule: str = Field(description="the matching rule, or `manual`")
    rule_version: str
    transfer_ids: list[int]
    record_keys: list[RecordKey]
    created_at: datetime
    created_by: str
    removed_at: datetime | None
    removed_by: str | None
    removed_reason: str | None


class FeedBreak(BreakCore):
    """`break.opened` / `break.resolved`: the break as opened, or as resolved with that resolution."""

    token: TokenRef | None = Field(description="null if the break names no token")
    since: datetime | None = Field(description="the oldest item's time")


MATCH_EVENT_EXAMPLE = {
    "seq": 1041, "id": "match.created:77:1041", "type": "match.created",
    "occurred_at": "2026-11-26T09:14:03.120000+00:00", "recorded_at": "2026-11-26T09:14:03.180000+00:00",
    "object": {"id": 77, "rule": "tx_hash", "rule_version": "1", "transfer_ids": [1042],
               "record_keys": [RECORD_KEY_EXAMPLE],
               "created_at": "2026-11-26T09:14:03.120000+00:00", "created_by": "reconciler",
               "removed_at": None, "removed_by": None, "removed_reason": None}}


class FeedEventOut(BaseModel):
    seq: int = Field(description="the event's position; strictly increasing")
    id: str = Field(description="stable identifier: type, entity id and seq")
    type: str = Field(description="one of " + ", ".join(feed.TYPES))
    occurred_at: datetime | None = Field(description="when it happened on chain (block time) or in the business")
    recorded_at: datetime = Field(description="when this service recorded it")
    object: TransferAt | FeedRecord | FeedMatch | FeedBreak = Field(
        description="by `type`: the transfer (transfer.*), the record version, the match or the break, as it was "
                    "then")
    model_config = examples(MATCH_EVENT_EXAMPLE)


class FeedPage(BaseModel):
    events: list[FeedEventOut]
    next_after: int = Field(description="pass as `after` for the next page (the feed's head when this page is "
                                        "short: nothing more has committed yet)")
    model_config = examples({"events": [MATCH_EVENT_EXAMPLE], "next_after": 1041})
