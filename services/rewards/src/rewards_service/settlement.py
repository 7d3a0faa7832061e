"""Settling rebates at cycle close: a statement per program, rebate measure, cycle and treatment
member, the rebate paid as points (``rebate.settled``, credited by the points service) or cash (the
member's wallet), its cost spent from the program's budget.

Idempotent: a statement is unique per program, measure, cycle and member, and a cycle whose
settlement finished is marked (``settlement_runs``). Members are settled in chunks, each one
transaction that takes the members' locks, then the budget's (as issuance does). Active and ended
programs settle; a paused one waits. At the same close, the program's cycle-close document rules
issue their honour certificates and thank-you letters (``documents.issue_at_cycle_close``), on the
same figures.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.dates import add_months
from loyalty_shared.errors import NotFound
from loyalty_shared.events import RebateSettled
from loyalty_shared.events.types import Amount, SignedAmount
from loyalty_shared.messaging.outbox import publish
from loyalty_shared.service import Runtime, periodic
from rewards_service import domain
from rewards_service.documents import issue_at_cycle_close
from rewards_service.domain.documents import DocumentMeasure, at_cycle_close
from rewards_service.domain.issuing import Due, once_key
from rewards_service.domain.settlement import EarlierCycle, settle
from rewards_service.facts import lock_members
from rewards_service.issuing import Issuer, LiveProgram, ParticipantRow, parsed
from rewards_service.models import SettlementRun, Statement, StatementLine
from rewards_service.wallet import credit_wallet

MEMBERS_PER_TRANSACTION = 200


class SettlementReport(BaseModel):
    cycles: int
    statements: int
    paid: int
    refused: int
    documents: int = Field(default=0, description="honour certificates and thank-you letters issued")


@dataclass
class _Counts:
    statements: int = 0
    paid: int = 0
    refused: int = 0
    documents: int = 0


_SETTLING = text(
    "SELECT p.id, p.version, p.name, p.status, p.status_changed_at, v.document FROM programs AS p "
    "JOIN program_versions AS v ON v.program_id = p.id AND v.version = p.version "
    "WHERE p.status IN ('active', 'ended') ORDER BY p.id"
)
_RUNS = text("SELECT cycle FROM settlement_runs WHERE program_id = :program")
_TREATED = text(
    "SELECT member_id FROM participants WHERE program_id = :program AND grp = 'treatment' "
    "AND enrolled_at < :until ORDER BY member_id"
)
_ORDERS = text(
    "SELECT member_id, order_id, amount, refunded, cancelled_at, paid_at FROM orders "
    "WHERE member_id = ANY(CAST(:members AS text[])) AND currency = :currency "
    "AND paid_at >= :since AND paid_at < :until ORDER BY member_id, paid_at, order_id"
)
_EARLIER = text(
    "SELECT s.member_id, s.measure_id, s.cycle, s.cycle_start, s.cycle_end, s.segment, s.carried, "
    "COALESCE((SELECT sum(l.amount) FROM statement_lines AS l JOIN statements AS t "
    "ON t.statement_id = l.statement_id WHERE t.program_id = s.program_id "
    "AND t.measure_id = s.measure_id AND t.member_id = s.member_id AND l.cycle = s.cycle "
    "AND l.kind IN ('rebate', 'adjustment')), 0) AS paid "
    "FROM statements AS s WHERE s.program_id = :program AND s.member_id = ANY(CAST(:members AS text[])) "
    "ORDER BY s.member_id, s.measure_id, s.cycle_end"
)


async def settle_closed_cycles(rt: Runtime) -> SettlementReport:
    """Settle every closed cycle of the active and ended programs not settled yet."""
    counts, cycles = _Counts(), 0
    async with rt.sessions() as session:
        programs = (await session.execute(_SETTLING)).all()
    for row in programs:
        live = LiveProgram(row.id, row.version, parsed(row.id, row.version, row.document))
        rebates = [m for m in live.program.measures if isinstance(m, domain.Rebate)]
        documents = [m for m in live.program.measures if isinstance(m, DocumentMeasure) and at_cycle_close(m)]
        if not rebates and not documents:
            continue
        now = rt.clock.now()
        until = row.status_changed_at if row.status == "ended" else now
        async with rt.sessions() as session:
            done = set((await session.scalars(_RUNS, {"program": live.id})).all())
        for cycle in domain.closed_cycles(live.program.schedule, now):
            if cycle.label in done or cycle.start >= until:
                continue
            cycles += 1
            settled_before = counts.statements
            async with rt.sessions() as session:
                members = list(await session.scalars(_TREATED, {"program": live.id, "until": cycle.end}))
            for start in range(0, len(members), MEMBERS_PER_TRANSACTION):
                if not rebates:
                    break
                async with rt.unit_of_work() as session:
                    chunk = members[start : start + MEMBERS_PER_TRANSACTION]
                    await settle_members(session, live, row.name, cycle, chunk, counts)
            counts.documents += await issue_at_cycle_close(rt, live, cycle, members)
            async with rt.unit_of_work() as session:
                session.add(
                    SettlementRun(
                        program_id=live.id,
                        cycle=cycle.label,
                        statements=counts.statements - settled_before,
                        finished_at=clock_now(session),
                    )
                )
    return SettlementReport(
        cycles=cycles,
        statements=counts.statements,
        paid=counts.paid,
        refused=counts.refused,
        documents=counts.documents,
    )


async def settle_members(
    session: AsyncSession,
    live: LiveProgram,
    name: str,
    cycle: domain.Cycle,
    members: Sequence[str],
    counts: _Counts,
) -> None:
    """The statements of ``members`` for ``cycle`` (those without one yet)."""
    assert cycle.end is not None
    await lock_members(session, members)
    issuer = await Issuer.load(session, [live], members)
    program = live.program
    since = min(program.schedule.starts, add_months(cycle.end, -12))
    params = {
        "members": list(members),
        "currency": program.budget.currency,
        "since": since,
        "until": cycle.end,
    }
    history: dict[str, list[Any]] = defaultdict(list)
    for order in await session.execute(_ORDERS, params):
        history[order.member_id].append(order)
    earlier: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for statement in await session.execute(_EARLIER, {"program": live.id, "members": list(members)}):
        earlier[(statement.member_id, statement.measure_id)].append(statement)
    for member_id in members:
        participant = issuer.participants.get((live.id, member_id))
        if participant is None or participant.grp != "treatment":
            continue
        orders = history[member_id]
        facts = domain.MemberFacts(member_id, None, tuple((o.paid_at, _net(o)) for o in orders))
        for measure in program.measures:
            if not isinstance(measure, domain.Rebate):
                continue
            before = earlier[(member_id, measure.id)]
            if any(s.cycle == cycle.label for s in before):
                continue  # settled already
            await _settle_one(
                session, issuer, live, name, cycle, participant, measure, facts, orders, before, counts
            )
    await issuer.flush()


def _net(order: Any) -> Decimal:
    return Decimal(0) if order.cancelled_at is not None else order.amount - order.refunded


async def _settle_one(
    session: AsyncSession,
    issuer: Issuer,
    live: LiveProgram,
    name: str,
    cycle: domain.Cycle,
    participant: ParticipantRow,
    measure: domain.Rebate,
    facts: domain.MemberFacts,
    orders: Sequence[Any],
    before: Sequence[Any],
    counts: _Counts,
) -> None:
    assert cycle.end is not None
    figures = domain.figures(facts, cycle.start, cycle.end)
    segment = domain.segment_of(facts, cycle.end) if measure.personalised else None
    earlier_cycles = [
        EarlierCycle(
            s.cycle,
            domain.figures(facts, s.cycle_start, s.cycle_end).spend,
            domain.figures(facts, s.cycle_start, s.cycle_end).orders,
            s.segment,
            s.paid,
        )
        for s in before
    ]
    brought_forward = before[-1].carried if before else Decimal(0)
    settlement = settle(measure, figures.spend, figures.orders, segment, earlier_cycles, brought_forward)
    in_cycle = [o for o in orders if cycle.start <= o.paid_at < cycle.end]
    if not in_cycle and not settlement.adjustments and not brought_forward:
        return  # nothing happened for this member: no statement
    program, currency = live.program, live.program.budget.currency
    points: int | None = None
    cost = settlement.payable
    if measure.pay_as == "points" and settlement.payable > 0:
        assert program.budget.point_value is not None
        points = domain.points_for_cash(settlement.payable, program.budget.point_value) or None
        cost = domain.cash_value_of_points(points or 0, program.budget.point_value)
    status, refusal, reward_id = "nothing-due", None, None
    statement_id = str(uuid.uuid4())
    if cost > 0:
        due = Due(
            measure.id,
            None,
            cycle.label,
            once_key("rebate", live.id, measure.id, participant.member_id, cycle.label),
            f"rebate for {cycle.label}: net spend {figures.spend}, {figures.orders} orders",
        )
        amount = None if points is not None else settlement.payable
        issued = issuer.rebate(live, participant, due, cost, points=points, amount=amount)
        if issued.reward_id is None:
            status, refusal = "refused", issued.refusal
        else:
            status, reward_id = "paid", issued.reward_id
    now = issuer.now
    step = settlement.due.step
    session.add(
        Statement(
            statement_id=statement_id,
            program_id=live.id,
            version=live.version,
            measure_id=measure.id,
            member_id=participant.member_id,
            cycle=cycle.label,
            cycle_start=cycle.start,
            cycle_end=cycle.end,
            currency=currency,
            net_spend=figures.spend,
            orders=figures.orders,
            segment=segment,
            step_min=None if step is None else step.min,
            step_value=None if step is None else step.value,
            rebate=settlement.due.amount,
            adjustments=sum((a.amount for a in settlement.adjustments), Decimal(0)),
            brought_forward=brought_forward,
            payable=settlement.payable if status == "paid" else Decimal(0),
            carried=settlement.carried,
            pay_as=measure.pay_as,
            points=points if status == "paid" else None,
            status=status,
            refusal=refusal,
            reward_id=reward_id,
            settled_at=now,
        )
    )
    lines = [
        StatementLine(
            kind="order",
            cycle=cycle.label,
            order_id=o.order_id,
            paid=o.amount,
            deducted=o.amount - _net(o),
            amount=_net(o),
        )
        for o in in_cycle
    ]
    lines.append(StatementLine(kind="rebate", cycle=cycle.label, amount=settlement.due.amount))
    lines += [
        StatementLine(kind="adjustment", cycle=a.cycle, amount=a.amount) for a in settlement.adjustments
    ]
    if brought_forward:
        lines.append(StatementLine(kind="brought-forward", cycle=before[-1].cycle, amount=brought_forward))
    for number, line in enumerate(lines, 1):
        line.statement_id, line.line = statement_id, number
    session.add_all(lines)
    counts.statements += 1
    if status == "paid":
        counts.paid += 1
        assert reward_id is not None
        if measure.pay_as == "cash":
            await credit_wallet(
                session, participant.member_id, currency, settlement.payable, "rebate", reward_id, now
            )
        publish(
            session,
            RebateSettled(
                statement_id=statement_id,
                reward_id=reward_id,
                program_id=live.id,
                program_name=name,
                program_version=live.version,
                measure_id=measure.id,
                member_id=participant.member_id,
                cycle=cycle.label,
                pay_as=measure.pay_as,
                points=points,
                amount=settlement.payable,
                currency=currency,
                cost=cost,
                net_spend=figures.spend,
                orders=figures.orders,
                settled_at=now,
            ),
            participant.member_id,
        )
    elif status == "refused":
        counts.refused += 1


async def _run(rt: Runtime) -> str | None:
    report = await settle_closed_cycles(rt)
    return None if not report.cycles else report.model_dump_json()


settlement_job = periodic("rebate settlement", "settlement_interval_s", _run)


# --- statements as the CRM reads them ----------------------------------------------------------------


class StatementLineView(BaseModel):
    line: int
    kind: str
    cycle: str
    order_id: str | None
    paid: Amount | None
    deducted: Amount | None
    amount: SignedAmount


class StatementView(BaseModel):
    statement_id: str
    program_id: str
    program_version: int
    measure_id: str
    member_id: str
    cycle: str
    cycle_start: datetime
    cycle_end: datetime
    currency: str
    net_spend: Amount
    orders: int
    segment: str | None
    step_min: Amount | None = Field(description="the ladder step reached (none: below the first)")
    step_value: Amount | None
    rebate: Amount = Field(description="this cycle's rebate")
    adjustments: SignedAmount = Field(description="late refunds and cancels of earlier cycles")
    brought_forward: SignedAmount
    payable: Amount = Field(description="what was paid")
    carried: SignedAmount = Field(description="a shortfall carried to the next statement")
    pay_as: str
    points: int | None
    status: str
    refusal: str | None
    reward_id: str | None
    settled_at: datetime
    lines: list[StatementLineView] = Field(default_factory=list)


class StatementList(BaseModel):
    items: list[StatementView]


def _statement_view(s: Statement, lines: Sequence[StatementLine] = ()) -> StatementView:
    return StatementView(
        statement_id=s.statement_id,
        program_id=s.program_id,
        program_version=s.version,
        measure_id=s.measure_id,
        member_id=s.member_id,
        cycle=s.cycle,
        cycle_start=s.cycle_start,
        cycle_end=s.cycle_end,
        currency=s.currency,
        net_spend=s.net_spend,
        orders=s.orders,
        segment=s.segment,
        step_min=s.step_min,
        step_value=s.step_value,
        rebate=s.rebate,
        adjustments=s.adjustments,
        brought_forward=s.brought_forward,
        payable=s.payable,
        carried=s.carried,
        pay_as=s.pay_as,
        points=s.points,
        status=s.status,
        refusal=s.refusal,
        reward_id=s.reward_id,
        settled_at=s.settled_at,
        lines=[
            StatementLineView(
                line=line.line,
                kind=line.kind,
                cycle=line.cycle,
                order_id=line.order_id,
                paid=line.paid,
                deducted=line.deducted,
                amount=line.amount,
            )
            for line in lines
        ],
    )


async def member_statements(session: AsyncSession, member_id: str) -> StatementList:
    rows = await session.scalars(
        select(Statement)
        .where(Statement.member_id == member_id)
        .order_by(Statement.cycle_end, Statement.program_id, Statement.measure_id)
    )
    return StatementList(items=[_statement_view(s) for s in rows])


async def get_statement(session: AsyncSession, statement_id: str) -> StatementView:
    statement = await session.get(Statement, statement_id)
    if statement is None:
        raise NotFound(f"no statement {statement_id}", code="statement-not-found")
    lines = await session.scalars(
        select(StatementLine).where(StatementLine.statement_id == statement_id).order_by(StatementLine.line)
    )
    return _statement_view(statement, list(lines))
