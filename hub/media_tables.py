"""Evidence media tables (issue 14, migration 0004_i14), on :class:`~ringwatch.hub.tables.Base`.

- :class:`MediaItem`: one clip or snapshot an edge box uploaded; the file lives in the media
  folder (``settings.media_dir``) under ``path``, checked against ``sha256`` when read.
- :class:`MediaEvent`: which alert events a media item shows (a clip may span several), the
  link from an incident's points to its media.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ringwatch.hub.tables import ID, Base


class MediaItem(Base):
    __tablename__ = "media_items"
    __table_args__ = (Index("ix_media_items_site_started", "site_id", "started_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # clip | snapshot
    content_type: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(String(ID))
    device_id: Mapped[str] = mapped_column(String(ID))
    camera_id: Mapped[str] = mapped_column(String(ID))
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime]
    frames: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[dt.datetime] = mapped_column(index=True)


class MediaEvent(Base):
    __tablename__ = "media_events"
    media_id: Mapped[str] = mapped_column(
        ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
