"""Kill switches and the version counter that tells API replicas to reload them.

A switch's scope columns hold an exact value, a `*`/`?` glob, or NULL (any value). Its `state`
is what was last written (active, pending_approval, released, expired); a switch whose
`expires_at` has passed is treated as expired everywhere even before a sweep writes that.

`kill_switch_version` has one row; every change to `kill_switches` bumps it in the same
transaction, so a replica learns that something changed with one primary-key read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.warehouse.tables import Base
from app.warehouse.types import UtcDateTime


class KillSwitch(Base):
    __tablename__ = "kill_switches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str | None] = mapped_column(String(1024))
    model: Mapped[str | None] = mapped_column(String(1024))
    user_id: Mapped[str | None] = mapped_column(String(1024))
    team: Mapped[str | None] = mapped_column(String(1024))
    reason: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))  # rule or operator
    created_by: Mapped[str] = mapped_column(String(256))  # the rule id or the operator
    rule_id: Mapped[str | None] = mapped_column(String(64))
    group_json: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(256))  # who released/approved it

    __table_args__ = (Index(None, "state"), Index(None, "rule_id", "state"))


class KillSwitchVersion(Base):
    __tablename__ = "kill_switch_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
