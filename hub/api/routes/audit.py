"""The audit log, read-only (admins and auditors); reading it is itself audited."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends

from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    AfterId,
    Caller,
    Filter,
    HubDep,
    Limit,
    Reason,
    SessionDep,
    require,
)
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import AuditPublic

router = APIRouter(prefix="/audit", tags=["audit"])
Reader = Annotated[Caller, Depends(require(Role.ADMIN, Role.AUDITOR))]


@router.get("")
def list_audit(
    session: SessionDep,
    hub: HubDep,
    caller: Reader,
    reason: Reason = None,
    action: Filter = None,
    entity: Filter = None,
    actor: Filter = None,
    after_id: AfterId = 0,
    limit: Limit = 500,
) -> list[AuditPublic]:
    query = sa.select(t.AuditEntry).where(t.AuditEntry.id > after_id).order_by(t.AuditEntry.id)
    for column, value in (
        (t.AuditEntry.action, action),
        (t.AuditEntry.entity, entity),
        (t.AuditEntry.actor, actor),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = [AuditPublic.model_validate(r) for r in session.scalars(query.limit(limit))]
    crud.audit(session, caller.actor, "read", "audit_log", None, hub.clock(), reason)
    session.commit()
    return rows
