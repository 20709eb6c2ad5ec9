"""`Authorization: Bearer <key>` on every endpoint but /v1/health: 401 without a valid key, 403 without the scope.

Endpoints declare what they need with `Depends(require(Scope.X, ...))` (any one of the scopes listed is enough;
`require()` with none: any valid key). The dependency returns the `Principal`, whose name is the actor the audit
trail records. The security scheme is in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.access import Forbidden, Principal, Scope, Unauthorized, authenticate
from app.api.problems import problem_response

bearer = HTTPBearer(auto_error=False, description="an API key from `settle keys create`")


def require(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                                  Depends(bearer)]) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("send an API key: Authorization: Bearer <key>")
        principal = await authenticate(request.app.state.engine, credentials.credentials,
                                       getattr(request.app.state, "key_cache", None))
        if principal is None:
            raise Unauthorized("unknown or revoked API key")
        if scopes and not principal.scopes & set(scopes):
            raise Forbidden(f"key {principal.name!r} lacks the scope this needs: "
                            f"{' or '.join(s.value for s in scopes)}")
        return principal

    dependency.__name__ = f"require_{'_'.join(s.value for s in scopes) or 'key'}"
    return dependency


AUTH: dict[int | str, dict] = {
    401: problem_response("no key, or an unknown or revoked one", headers={"WWW-Authenticate": {
        "description": "`Bearer realm=\"settle\"`", "schema": {"type": "string"}}}),
    403: problem_response("the key lacks the scope this needs")}
PROBLEMS: dict[int | str, dict] = {
    400: problem_response("a well-formed value that is wrong (unknown chain, bad checksum, foreign cursor); the "
                          "problem names the field"),
    422: problem_response("a malformed request; the problem names each field")}
"""Every router answers these as RFC 9457 problems (`application/problem+json`)."""
