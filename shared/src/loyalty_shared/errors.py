"""RFC 9457 problem details: every error a REST client sees is ``application/problem+json``.

Domain code raises ``Problem`` subclasses (or ``Problem`` itself); FastAPI's own validation errors
and unexpected exceptions are turned into problems too, so no client ever sees an HTML page or a
bare 500 without a body. Operations document their problems with ``problem_responses``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:loyalty:problem:"


class Problem(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotFound(Problem):
    status, code, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(Problem):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Forbidden"


class ProblemDetails(BaseModel):
    """The body of every error response (``application/problem+json``); a problem may say more
    (a validation problem lists its ``errors``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:loyalty:problem:<code>: what kind of problem, for machines")
    title: str
    status: int
    detail: str = Field(description="what is wrong, in words")
    instance: str | None = Field(default=None, description="the request's path")


PROBLEM_SCHEMA = ProblemDetails.model_json_schema()

DESCRIPTIONS = {
    400: "malformed request (body, header or cursor)",
    401: "no or unknown API key",
    403: "the key's scope may not make this call",
    404: "not found",
    409: "conflict",
    422: "invalid request (every problem listed)",
}


def problem_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of the problems an operation answers with, each a status (with its
    usual description) or a (status, description) pair: ``problem_responses(422, (409, "..."))``."""
    responses: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, DESCRIPTIONS[entry])
        content = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}
        responses[status] = {"description": description, "content": content}
    return responses


def unstorable_text(document: Any) -> list[tuple[str | int, ...]]:
    """Where a parsed JSON document holds text PostgreSQL cannot store: a NUL character, or an
    unpaired surrogate (not UTF-8). A key that is such text is named by its ``ascii()``."""
    found: list[tuple[str | int, ...]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:  # not recursive: a deeply nested document is no reason for a RecursionError
        location, value = stack.pop()
        if isinstance(value, str) and not _storable(value):
            found.append(location)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _storable(key):
                    found.append((*location, ascii(key)))
                else:
                    stack.append(((*location, key), item))
        elif isinstance(value, list):
            stack.extend(((*location, i), item) for i, item in enumerate(value))
    return sorted(found, key=str)


def _storable(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


class StorableTextRoute(APIRoute):
    """A route that answers 422 to a JSON body holding text PostgreSQL cannot store, before a
    handler could get as far as an INSERT (which would fail with a 500)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def storable_text_first(request: Request) -> Response:
            try:
                document = json.loads(await request.body())
            except (ValueError, RecursionError):
                document = None  # not JSON: FastAPI says so (400 or 422)
            if locations := unstorable_text(document):
                message = "text may not hold a NUL character or an unpaired surrogate"
                raise RequestValidationError(
                    [{"type": "unstorable_text", "loc": ("body", *loc), "msg": message} for loc in locations]
                )
            return await handler(request)

        return storable_text_first


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="loyalty"'} if problem.status == 401 else None
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": [str(p) for p in err.get("loc", ())], "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors)
        return problem_response(
            Problem(
                detail or "invalid request",
                status=422,
                code="validation-error",
                title="Request validation failed",
                errors=errors,
            ),
            request,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(
            Problem(str(exc.detail), status=exc.status_code, code=code, title=str(exc.detail)),
            request,
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            Problem(
                "an unexpected error occurred; it has been logged",
                status=500,
                code="internal-error",
                title="Internal error",
            ),
            request,
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
