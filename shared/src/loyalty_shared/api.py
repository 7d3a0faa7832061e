"""What every service's routes share: the member id path parameter, the runtime dependency, and
answers serialised once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Response
from pydantic import BaseModel

from loyalty_shared.events.types import MEMBER_ID_PATTERN
from loyalty_shared.service import Runtime, runtime

MemberIdPath = Annotated[str, Path(pattern=MEMBER_ID_PATTERN, description="the member's id")]
Rt = Annotated[Runtime, Depends(runtime)]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as JSON, serialised once. The route still declares the model (``response_model``)
    for its OpenAPI; FastAPI passes a returned ``Response`` through without validating and
    serialising it again."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
