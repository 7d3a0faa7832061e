"""API keys with scopes. ``LOYALTY_API_KEYS`` = comma-separated ``key:scope[:partner_id]``.

Keys are held only as SHA-256 digests and compared in constant time; a key never appears in a log
or a repr. A request presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Routers use ``AuthenticatedRoute``, so the key is checked before anything in the request is read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant

from loyalty_shared.errors import Forbidden, StorableTextRoute, Unauthorized, problem_responses

Scope = Literal["ecommerce", "crm", "partner"]
SCOPES: tuple[Scope, ...] = ("ecommerce", "crm", "partner")


@dataclass(frozen=True)
class Principal:
    scope: Scope
    partner_id: str | None = None
    key_id: str = ""  # first 8 hex digits of the digest: safe to log


class ApiKeys:
    def __init__(self, spec: str) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for raw in filter(None, (part.strip() for part in spec.split(","))):
            key, _, rest = raw.partition(":")
            scope, _, partner_id = rest.partition(":")
            if not key or scope not in SCOPES:
                raise ValueError(
                    "LOYALTY_API_KEYS entries are key:scope[:partner_id] with scope one of "
                    f"{', '.join(SCOPES)} (entry {len(self._by_digest) + 1} is not)"
                )
            if scope == "partner" and not partner_id:
                raise ValueError("a partner key needs its partner id: key:partner:<partner_id>")
            digest = _digest(key)
            self._by_digest[digest] = Principal(
                scope=scope,
                partner_id=partner_id or None,
                key_id=digest.hex()[:8],
            )

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._by_digest)} keys)"

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found = None
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


class ScopeCheck:
    """FastAPI dependency (made by ``require``): the caller must present a key of one of ``scopes``."""

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        self.scopes = scopes

    async def __call__(self, request: Request) -> Principal:
        found = getattr(request.state, "principal", None)  # AuthenticatedRoute checked it already
        if isinstance(found, Principal) and found.scope in self.scopes:
            return found
        return self.authorize(request)

    def authorize(self, request: Request) -> Principal:
        keys: ApiKeys = request.app.state.api_keys
        key = presented_key(request)
        if key is None:
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'")
        principal = keys.authenticate(key)
        if principal is None:
            raise Unauthorized("unknown API key")
        if principal.scope not in self.scopes:
            raise Forbidden(
                f"this call needs one of the scopes {', '.join(self.scopes)}; the key has {principal.scope}"
            )
        request.state.principal = principal
        return principal


def require(*scopes: Scope) -> ScopeCheck:
    """FastAPI dependency: the caller must present a key of one of these scopes."""
    return ScopeCheck(scopes)


def _scope_check(dependant: Dependant) -> ScopeCheck | None:
    for sub in dependant.dependencies:
        found = sub.call if isinstance(sub.call, ScopeCheck) else _scope_check(sub)
        if found is not None:
            return found
    return None


class AuthenticatedRoute(StorableTextRoute):
    """A route whose ``require(...)`` runs before FastAPI reads the request: a caller without a key,
    or without the scope, gets 401 or 403 and learns nothing about its request (FastAPI parses and
    validates the body before it resolves dependencies, so a bad body would answer 400/422 first).
    The route's OpenAPI lists those answers. The route class of every router."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check = _scope_check(self.dependant)
        if check is not None:
            statuses = (401,) if set(check.scopes) == set(SCOPES) else (401, 403)
            self.responses = {**problem_responses(*statuses), **self.responses}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        check = _scope_check(self.dependant)
        if check is None:
            return handler

        async def authorized_first(request: Request) -> Response:
            check.authorize(request)
            return await handler(request)

        return authorized_first
