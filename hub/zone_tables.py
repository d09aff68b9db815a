"""Zone editor tables, on the hub's :class:`~ringwatch.hub.tables.Base` (migration 0003).

- :class:`CameraZoneConfig`: per camera, the hub's zone configuration (the source of truth
  once saved here; the edge's local file only bootstraps a camera), the config the device
  last accepted, and the state of the latest push (pending / accepted / rejected).
- :class:`ZonePush`: every push of a config to a device, with the device's answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ringwatch.hub.tables import ID, Base


class CameraZoneConfig(Base):
    """The current zone config of one camera and where its latest push stands."""

    __tablename__ = "camera_zone_configs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            ondelete="CASCADE",
        ),
    )
    site_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(ID))
    version: Mapped[int] = mapped_column(Integer, default=1)
    zones: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected
    request_id: Mapped[str] = mapped_column(String(ID))
    reason: Mapped[str | None] = mapped_column(Text)
    applied_zones: Mapped[dict[str, Any] | None]
    applied_version: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime]
    pushed_at: Mapped[dt.datetime | None]
    pushes: Mapped[int] = mapped_column(Integer, default=0)
    answered_at: Mapped[dt.datetime | None]


class ZonePush(Base):
    """One saved config sent to a device (re-sent with the same request id until answered)."""

    __tablename__ = "zone_pushes"
    __table_args__ = (Index("ix_zone_pushes_camera", "site_id", "camera_id", "created_at"),)
    request_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(ID))
    device_id: Mapped[str] = mapped_column(String(ID))
    camera_id: Mapped[str] = mapped_column(String(ID))
    version: Mapped[int] = mapped_column(Integer)
    zones: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[dt.datetime | None]
