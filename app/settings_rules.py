"""Rules of the configuration that pydantic's own messages would state badly: one message for a field whatever
its validator tried, and the `[recon]` policy checked against the tokens and chains when the settings load (not at
the first pass). Errors are `PydanticCustomError`s that `app.settings` reports by key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from app.settlement.amounts import parse_units
from app.settlement.severity import Severity

if TYPE_CHECKING:
    from app.settings import Settings


def one_message(message: str, *, depth: bool = False) -> WrapValidator:
    """One message for a field whatever the validator tried (a union reports each branch otherwise: `x.int: ...`,
    `x.literal['safe']: ...`). With `depth`, also refuse booleans and negative numbers."""

    def check(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        if depth and isinstance(value, bool):
            raise PydanticCustomError("one_message", message)
        try:
            result = handler(value)
        except ValidationError:
            raise PydanticCustomError("one_message", message) from None
        if depth and isinstance(result, int) and result < 0:
            raise PydanticCustomError("one_message", message)
        return result

    return WrapValidator(check)


def check_recon(settings: Settings, chain_names: set[str]) -> None:
    """Token symbols, amounts, chain names and severities of `[recon]`, named by key, before any pass runs."""
    recon = settings.recon
    for section, table in (("tolerance", recon.tolerance), ("dust", recon.dust)):
        for symbol, value in table.items():
            tokens = [t for t in settings.tokens if t.symbol == symbol]
            if not tokens:
                configured = ", ".join(sorted({t.symbol for t in settings.tokens})) or "none"
                raise PydanticCustomError(
                    "unknown_symbol", f"recon.{section}.{symbol}: unknown token symbol (configured: {configured})")
            for token in tokens:
                try:
                    parse_units(value, token.decimals)
                except ValueError as exc:
                    reason = str(exc).replace("the token has", f"{symbol} on {token.chain} has")
                    raise PydanticCustomError("bad_amount", f"recon.{section}.{symbol}: {reason}") from None
    for i, name in enumerate(recon.match_finalized_only):
        if name not in chain_names:
            raise PydanticCustomError("unknown_chain", f"recon.match_finalized_only[{i}]: unknown chain {name!r} "
                                                       f"(configured: {sorted(chain_names)})")
    for level in recon.sla_hours:
        if level not in set(Severity):
            raise PydanticCustomError("unknown_severity", f"recon.sla_hours.{level}: unknown severity (one of "
                                                          f"{', '.join(s.value for s in Severity)})")
