"""The e-commerce backend at checkout: a quote of what a basket gets, a coupon's use, a wallet spend."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from loyalty_shared.api import Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.checkout import (
    QuoteBody,
    QuoteView,
    WalletSpend,
    WalletSpendResult,
    checkout_quote,
    spend_wallet,
)
from rewards_service.coupons import CouponUse, CouponUseResult, use_coupon

router = APIRouter(prefix="/v1/checkout", tags=["checkout"], route_class=AuthenticatedRoute)

Shop = Annotated[Principal, Depends(require("ecommerce"))]
Key = Annotated[str, Depends(idempotency_key)]


@router.post("/quote", response_model=QuoteView, responses=problem_responses(400, 422))
async def post_quote(body: QuoteBody, rt: Rt, _: Shop) -> QuoteView:
    """What the basket gets, with reasons: the best rate (a ladder discount earned last cycle or the
    tier's discount), the coupons given, store credit when asked for. Read-only."""
    async with rt.sessions() as session:
        return await checkout_quote(session, body)


@router.post(
    "/coupons/use",
    response_model=CouponUseResult,
    responses=problem_responses(
        400, (404, "no such coupon for this member"), (409, "used or expired, or no budget left"), 422
    ),
)
async def post_coupon_use(body: CouponUse, key: Key, rt: Rt, _: Shop) -> CouponUseResult:
    """Use a coupon on an order: once (a retry with the same Idempotency-Key answers the same)."""
    async with rt.unit_of_work() as session:
        return await use_coupon(session, body, key)


@router.post(
    "/wallet/spend",
    response_model=WalletSpendResult,
    responses=problem_responses(400, (409, "the balance is short"), 422),
)
async def post_wallet_spend(body: WalletSpend, key: Key, rt: Rt, _: Shop) -> WalletSpendResult:
    """Take store credit for an order, once per Idempotency-Key; the wallet never goes below zero."""
    async with rt.unit_of_work() as session:
        return await spend_wallet(session, body, key)
