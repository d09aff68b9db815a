"""Tables of the duty console: each user's language, and the suppressions a rejected match
leaves (that person on that camera raises no new alert until ``until``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ringwatch.hub.tables import ID, Base


class ConsolePreference(Base):
    """A user's console settings (absent: the hub's default language)."""

    __tablename__ = "console_preferences"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    language: Mapped[str] = mapped_column(String(16))


class Suppression(Base):
    """A rejected match's quiet time: sightings of ``person_id`` on ``camera_id`` until
    ``until`` are kept as sightings but open no incident; ``hits`` counts them."""

    __tablename__ = "match_suppressions"
    __table_args__ = (Index("ix_match_suppressions_key", "site_id", "camera_id", "person_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(ID))
    camera_id: Mapped[str] = mapped_column(String(ID))
    person_id: Mapped[int] = mapped_column(Integer)
    incident_id: Mapped[str] = mapped_column(String(ID))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]
    until: Mapped[dt.datetime]
    hits: Mapped[int] = mapped_column(Integer, default=0)
