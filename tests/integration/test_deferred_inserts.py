"""The kit's deferred inserts (outbox, ledger): written at commit, never after a rollback, and a
savepoint's rollback drops only its own rows. Guarantee 2 rests on this."""

from __future__ import annotations

import uuid

from harness import Infra
from sqlalchemy import text

from loyalty_shared.db import (
    create_engine,
    defer_insert,
    deferred_mark,
    discard_deferred,
    session_factory,
)
from points_service.models import kit


def outbox_row(event_id: str) -> dict[str, object]:
    return {
        "topic": "t",
        "key": "k",
        "event_id": event_id,
        "event_type": "x",
        "payload": b"{}",
        "headers": {},
    }


async def test_rows_are_written_at_commit_and_a_rolled_back_savepoint_drops_only_its_own(
    infra: Infra,
) -> None:
    engine = create_engine(infra.sqlalchemy_url(await infra.new_database()))
    sessions = session_factory(engine)
    tag = uuid.uuid4().hex
    try:
        async with sessions() as session:
            async with session.begin():
                defer_insert(session, kit.outbox, outbox_row(f"{tag}-kept"))
                invisible = await session.scalar(text("SELECT count(*) FROM outbox"))
                mark = deferred_mark(session)
                try:
                    async with session.begin_nested():
                        defer_insert(session, kit.outbox, outbox_row(f"{tag}-savepoint"))
                        raise RuntimeError("the handler failed")
                except RuntimeError:
                    discard_deferred(session, mark)
                defer_insert(session, kit.outbox, outbox_row(f"{tag}-after"))
            try:
                async with session.begin():
                    defer_insert(session, kit.outbox, outbox_row(f"{tag}-rolled-back"))
                    raise RuntimeError("the request failed")
            except RuntimeError:
                pass
            async with session.begin():
                rows = await session.execute(text("SELECT event_id FROM outbox ORDER BY id"))
                written = [r[0] for r in rows]
    finally:
        await engine.dispose()
    assert invisible == 0
    assert written == [f"{tag}-kept", f"{tag}-after"]
