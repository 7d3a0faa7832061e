"""CRM: document templates, honour certificates and thank-you letters (issue, read, download,
revoke), how documents name a member. Public: a certificate's verification by its code (no key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from loyalty_shared.api import MemberIdPath, Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.document_templates import (
    TEMPLATE_ID,
    Kind,
    RecipientBody,
    RecipientView,
    TemplateBody,
    TemplateList,
    TemplateView,
    create_template,
    edit_template,
    get_recipient,
    get_template,
    list_templates,
    set_recipient,
)
from rewards_service.documents import (
    CertificateCheck,
    DocumentList,
    DocumentView,
    IssueBody,
    RevokeBody,
    check_certificate,
    document_pdf,
    get_document,
    issue_by_crm,
    member_documents,
    revoke,
)
from rewards_service.domain.documents import CODE_PATTERN

router = APIRouter(prefix="/v1", tags=["documents"], route_class=AuthenticatedRoute)
public = APIRouter(prefix="/v1", tags=["documents (public)"])

Crm = Annotated[Principal, Depends(require("crm"))]
Key = Annotated[str, Depends(idempotency_key)]
TemplateId = Annotated[str, Path(pattern=TEMPLATE_ID, description="the template's id")]
DocumentId = Annotated[str, Path(pattern=TEMPLATE_ID, description="the document's id")]
Code = Annotated[str, Path(pattern=CODE_PATTERN, description="the verification code printed on it")]
NO_TEMPLATE = (404, "no such template")
NO_DOCUMENT = (404, "no such document")
INVALID_TEMPLATE = (422, "the template is invalid: every problem listed in `problems`")
NO_FONT = (503, "no font installed to render documents with (the log says where it was looked for)")


def _actor(principal: Principal) -> str:
    return f"crm-key:{principal.key_id}"


class PdfResponse(Response):
    media_type = "application/pdf"


PDF: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the document as a PDF",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}


# --- templates -------------------------------------------------------------------------------------


@router.post(
    "/document-templates",
    status_code=201,
    response_model=TemplateView,
    responses=problem_responses(400, INVALID_TEMPLATE),
)
async def post_template(body: TemplateBody, rt: Rt, principal: Crm) -> TemplateView:
    """A certificate or letter template (version 1)."""
    async with rt.unit_of_work() as session:
        return await create_template(session, body, _actor(principal))


@router.get("/document-templates", response_model=TemplateList, responses=problem_responses(422))
async def get_templates(rt: Rt, _: Crm, kind: Kind | None = None) -> TemplateList:
    """Every template at its newest version."""
    async with rt.sessions() as session:
        return await list_templates(session, kind)


@router.get(
    "/document-templates/{template_id}",
    response_model=TemplateView,
    responses=problem_responses(NO_TEMPLATE, 422),
)
async def get_one_template(template_id: TemplateId, rt: Rt, _: Crm) -> TemplateView:
    async with rt.sessions() as session:
        return await get_template(session, template_id)


@router.put(
    "/document-templates/{template_id}",
    response_model=TemplateView,
    responses=problem_responses(400, NO_TEMPLATE, (409, "the kind cannot change"), INVALID_TEMPLATE),
)
async def put_template(template_id: TemplateId, body: TemplateBody, rt: Rt, principal: Crm) -> TemplateView:
    """Edit: a new version, used by the documents issued from now on."""
    async with rt.unit_of_work() as session:
        return await edit_template(session, template_id, body, _actor(principal))


# --- documents -------------------------------------------------------------------------------------


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentList,
    responses=problem_responses(
        400, (422, "invalid, an unknown template, or fields the template needs missing (listed)")
    ),
)
async def post_documents(
    body: IssueBody, key: Key, rt: Rt, principal: Crm, response: Response
) -> DocumentList:
    """Issue the template's certificate or letter to each member named, once per Idempotency-Key
    (a replay answers the same documents, header ``Idempotent-Replayed: true``). Rendered to PDF
    soon after; a download renders it at once."""
    async with rt.unit_of_work() as session:
        views, created = await issue_by_crm(session, body, key, _actor(principal))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return DocumentList(items=views)


# the .pdf route first: "{document_id}" alone would match "<id>.pdf" too
@router.get(
    "/documents/{document_id}.pdf",
    response_class=PdfResponse,
    responses={**PDF, **problem_responses(NO_DOCUMENT, 422, NO_FONT)},
)
async def get_pdf(document_id: DocumentId, rt: Rt, _: Crm) -> PdfResponse:
    """The document's PDF (rendered now if it was not yet)."""
    rendition = await document_pdf(rt, document_id)
    name = f"{rendition.kind}-{document_id}.pdf"
    return PdfResponse(rendition.pdf, headers={"Content-Disposition": f'inline; filename="{name}"'})


@router.get(
    "/documents/{document_id}", response_model=DocumentView, responses=problem_responses(NO_DOCUMENT, 422)
)
async def get_one_document(document_id: DocumentId, rt: Rt, _: Crm) -> DocumentView:
    async with rt.sessions() as session:
        return await get_document(session, document_id)


@router.post(
    "/documents/{document_id}/revoke",
    response_model=DocumentView,
    responses=problem_responses(400, NO_DOCUMENT, 422),
)
async def post_revoke(document_id: DocumentId, body: RevokeBody, rt: Rt, principal: Crm) -> DocumentView:
    """Revoke a certificate or letter (final; a retry changes nothing): its code then shows it revoked."""
    async with rt.unit_of_work() as session:
        return await revoke(session, document_id, body, _actor(principal))


@router.get("/members/{member_id}/documents", response_model=DocumentList, responses=problem_responses(422))
async def get_member_documents(member_id: MemberIdPath, rt: Rt, _: Crm) -> DocumentList:
    """The member's certificates and letters, oldest first."""
    async with rt.sessions() as session:
        return await member_documents(session, member_id)


@router.put(
    "/members/{member_id}/recipient",
    response_model=RecipientView,
    responses=problem_responses(400, 422),
)
async def put_recipient(
    member_id: MemberIdPath, body: RecipientBody, rt: Rt, principal: Crm
) -> RecipientView:
    """How documents name the member: their name, their company's (copied into each document when it
    is issued)."""
    async with rt.unit_of_work() as session:
        return await set_recipient(session, member_id, body, _actor(principal))


@router.get(
    "/members/{member_id}/recipient",
    response_model=RecipientView,
    responses=problem_responses((404, "no name kept for the member"), 422),
)
async def get_one_recipient(member_id: MemberIdPath, rt: Rt, _: Crm) -> RecipientView:
    async with rt.sessions() as session:
        return await get_recipient(session, member_id)


# --- public ----------------------------------------------------------------------------------------


@public.get(
    "/certificates/{code}",
    response_model=CertificateCheck,
    responses=problem_responses((404, "no certificate has this code"), 422),
)
async def get_certificate(code: Code, rt: Rt) -> CertificateCheck:
    """Public, no key: confirms a certificate by the verification code printed on it, and shows what
    the certificate itself shows (title, to whom, achievement, period, issue date) and whether it
    stands (valid or revoked). A code no certificate has is a 404 that says nothing more."""
    async with rt.sessions() as session:
        return await check_certificate(session, code)
