"""CRM: rebate settlement (run now; the scheduled job does the same), statements, wallets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from loyalty_shared.api import MemberIdPath, Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from rewards_service.settlement import (
    SettlementReport,
    StatementList,
    StatementView,
    get_statement,
    member_statements,
    settle_closed_cycles,
)
from rewards_service.wallet import WalletView, wallet_of

router = APIRouter(prefix="/v1", tags=["settlement"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
StatementId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="the statement's id")]


@router.post("/settlements", response_model=SettlementReport)
async def post_settlement(rt: Rt, _: Crm) -> SettlementReport:
    """Settle every closed cycle not settled yet; safe to run again (a statement is written once)."""
    return await settle_closed_cycles(rt)


@router.get("/members/{member_id}/statements", response_model=StatementList, responses=problem_responses(422))
async def get_member_statements(member_id: MemberIdPath, rt: Rt, _: Crm) -> StatementList:
    async with rt.sessions() as session:
        return await member_statements(session, member_id)


@router.get(
    "/statements/{statement_id}",
    response_model=StatementView,
    responses=problem_responses((404, "no such statement"), 422),
)
async def get_one_statement(statement_id: StatementId, rt: Rt, _: Crm) -> StatementView:
    """A statement with its lines: qualifying orders, the rebate, adjustments, what was brought forward."""
    async with rt.sessions() as session:
        return await get_statement(session, statement_id)


@router.get("/members/{member_id}/wallet", response_model=WalletView, responses=problem_responses(422))
async def get_wallet(member_id: MemberIdPath, rt: Rt, _: Crm) -> WalletView:
    async with rt.sessions() as session:
        return await wallet_of(session, member_id)
