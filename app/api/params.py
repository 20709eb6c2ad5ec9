"""Query parameters several routers share: their schema pattern, and the checks that turn a well-formed but
wrong value into a 400 problem naming the parameter."""

from __future__ import annotations

from app.errors import BadRequest
from app.settings import Settings
from wallets import InvalidAddress, to_checksum

ADDRESS = "^0x[0-9a-fA-F]{40}$"


def chain_id(settings: Settings, name: str | None) -> int | None:
    if name is None:
        return None
    for chain in settings.chains:
        if chain.name == name:
            return chain.chain_id
    raise BadRequest("chain", f"unknown chain {name!r} (configured: {[c.name for c in settings.chains]})")


def address(field: str, value: str | None) -> str | None:
    """The checksummed address, or a 400 naming `field` (a bad EIP-55 checksum, say)."""
    if value is None:
        return None
    try:
        return to_checksum(value)
    except InvalidAddress as exc:
        raise BadRequest(field, str(exc)) from None
