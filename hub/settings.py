"""Hub settings: a YAML file plus environment variables (``RINGWATCH_HUB_<KEY>`` wins).

| key | env | default | meaning |
|---|---|---|---|
| database_url | RINGWATCH_HUB_DATABASE_URL | sqlite:///var/hub.sqlite3 | SQLAlchemy URL |
| broker_url | RINGWATCH_HUB_BROKER_URL | unset: private Mosquitto | mqtt://host:port |
| broker_username | RINGWATCH_HUB_BROKER_USERNAME | unset: anonymous | broker login |
| broker_password_file | RINGWATCH_HUB_BROKER_PASSWORD_FILE | unset | file holding the password |
| broker_ca_file | RINGWATCH_HUB_BROKER_CA_FILE | unset: system CAs | CA for mqtts:// |
| jwt_secret | RINGWATCH_HUB_JWT_SECRET | change-me (refused); 16+ chars | signs API tokens |
| template_key | RINGWATCH_HUB_TEMPLATE_KEY | change-me (refused); 16+ chars | encrypts templates |
| media_dir | RINGWATCH_HUB_MEDIA_DIR | var/media | uploaded clips and snapshots |
| evidence_key | RINGWATCH_HUB_EVIDENCE_KEY | unset: no uploads; 16+ chars | device upload keys |
| export_key_file | RINGWATCH_HUB_EXPORT_KEY_FILE | unset: derived | Ed25519 export key |
| colour_policy | - | outer/perimeter/inner = yellow/orange/red; red tier +1 | colours |
| enrol_min_quality | RINGWATCH_HUB_ENROL_MIN_QUALITY | 0.5 | lowest face quality to enrol |
| enrol_min_face_px | RINGWATCH_HUB_ENROL_MIN_FACE_PX | 48 | smallest enrolled face (px) |
| broker_kind | RINGWATCH_HUB_BROKER_KIND | mosquitto | mosquitto or nats |
| nats_url | RINGWATCH_HUB_NATS_URL | unset | nats://h1:4222,nats://h2:4222 (broker_kind nats) |
| max_clock_ahead_s | RINGWATCH_HUB_MAX_CLOCK_AHEAD_S | 86400 | later times: dead letter |
| max_message_age_s | RINGWATCH_HUB_MAX_MESSAGE_AGE_S | unset: after 2000 | older: dead letter |
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ringwatch.configfile import format_config_errors, read_yaml
from ringwatch.contract.colours import ColourPolicy
from ringwatch.contract.messages import TimeBounds
from ringwatch.errors import ConfigError
from ringwatch.models.face_quality import ENROL_MIN_FACE_PX, ENROL_MIN_QUALITY

DEFAULT_SECRET = "change-me"
MIN_SECRET_CHARS = 16


class HubSettings(BaseSettings):
    """Everything the hub needs; build once and pass to ``create_app(settings)``."""

    model_config = SettingsConfigDict(env_prefix="RINGWATCH_HUB_", extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite:///var/hub.sqlite3", description="SQLAlchemy database URL."
    )
    broker_url: str | None = Field(
        default=None,
        pattern=r"^mqtts?://[^/\s]+(:\d+)?/?$",
        description="MQTT broker; unset starts a private Mosquitto.",
    )
    broker_username: str | None = Field(
        default=None,
        min_length=1,
        description="User name the hub logs in to the broker with (the shipped ACL: `hub`).",
    )
    broker_password_file: Path | None = Field(
        default=None,
        description="File whose first line is the broker password (never logged); needs"
        " broker_username.",
    )
    broker_ca_file: Path | None = Field(
        default=None,
        description="CA certificate (PEM) that signed the broker's certificate, for"
        " mqtts://; unset: the system CAs.",
    )
    jwt_secret: str = Field(default=DEFAULT_SECRET, min_length=8, description="Signs JWTs.")
    template_key: str = Field(
        default=DEFAULT_SECRET, min_length=8, description="Key for face templates at rest."
    )
    colour_policy: ColourPolicy = Field(default_factory=ColourPolicy)
    enrol_min_quality: float = Field(
        default=ENROL_MIN_QUALITY,
        ge=0,
        le=1,
        description="Lowest face quality (the edge's 0..1 score) an enrolment photo may have.",
    )
    enrol_min_face_px: int = Field(
        default=ENROL_MIN_FACE_PX,
        ge=8,
        le=2000,
        description="Smallest short side, in pixels, of an enrolled face.",
    )
    media_dir: Path = Field(
        default=Path("var/media"), description="Folder of uploaded clips and snapshots."
    )
    evidence_key: str | None = Field(
        default=None,
        min_length=MIN_SECRET_CHARS,
        description="Derives each edge device's upload key (`ringwatch hub device-key`);"
        " unset: media uploads are refused.",
    )
    smtp_url: str | None = Field(
        default=None,
        pattern=r"^smtps?://([^@/\s]+@)?[^/\s]+(:\d+)?/?$",
        description="smtp://[user@]host:port or smtps:// (implicit TLS); unset: no e-mail.",
    )
    smtp_from: str = Field(default="ringwatch@localhost", description="From address.")
    smtp_password_file: Path | None = Field(default=None, description="SMTP password file.")
    smtp_starttls: bool = Field(default=False, description="STARTTLS on smtp://.")
    export_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM, created if missing) that signs case exports;"
        " unset: derived from evidence_key (or jwt_secret).",
    )
    language: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="Console language of a user who has not chosen one."
    )
    broker_kind: Literal["mosquitto", "nats"] = Field(
        default="mosquitto",
        description="mosquitto: MQTT 5 shared subscription on broker_url (or a private"
        " Mosquitto); nats: a JetStream work-queue stream pulled from nats_url, with"
        " broker_url naming one node's MQTT listener (device status and replies, MQTT 3.1.1).",
    )
    nats_url: str | None = Field(
        default=None,
        pattern=r"^(nats|tls)://[^\s,]+(,(nats|tls)://[^\s,]+)*$",
        description="NATS servers for broker_kind nats: nats://host:port[,nats://...].",
    )
    max_clock_ahead_s: float = Field(
        default=86400,
        gt=0,
        le=366 * 86400,
        description="A message time further ahead of the hub's clock is dead-lettered"
        " (time_out_of_bounds).",
    )
    max_message_age_s: float | None = Field(
        default=None,
        gt=0,
        description="A message time further behind the hub's clock is dead-lettered; unset:"
        " only times before 2000 (an edge replays its outbox after an outage of any length).",
    )

    def time_bounds(self) -> TimeBounds:
        """The bounds message times are held to at ingest."""
        return TimeBounds(
            ahead=dt.timedelta(seconds=self.max_clock_ahead_s),
            behind=None
            if self.max_message_age_s is None
            else dt.timedelta(seconds=self.max_message_age_s),
        )

    def check_secrets(self) -> None:
        """Refuse secrets left at their defaults or shorter than ``MIN_SECRET_CHARS``
        (``build_hub`` calls this: no hub is built with a guessable key)."""
        names = ("jwt_secret", "template_key")
        left = [n for n in names if getattr(self, n) == DEFAULT_SECRET]
        if left:
            keys = ", ".join(f"RINGWATCH_HUB_{n.upper()}" for n in left)
            raise ConfigError(f"hub settings: {', '.join(left)} left at the default; set {keys}")
        short = [n for n in names if len(getattr(self, n)) < MIN_SECRET_CHARS]
        if short:
            keys = ", ".join(f"RINGWATCH_HUB_{n.upper()}" for n in short)
            raise ConfigError(
                f"hub settings: {', '.join(short)} shorter than {MIN_SECRET_CHARS} characters;"
                f" set {keys} to a long random value"
            )


def load_hub_settings(path: Path | None = None, **overrides: Any) -> HubSettings:
    """Settings from ``path`` (optional YAML) overlaid by environment variables."""
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "hub settings"
    try:
        return _from_file_then_env(data, overrides)
    except ValidationError as exc:
        raise ConfigError(format_config_errors(exc, source)) from None


def _from_file_then_env(data: dict[str, Any], overrides: dict[str, Any]) -> HubSettings:
    # Environment beats the file: build from env alone, then fill what env did not set.
    from_env = HubSettings(**overrides)
    merged = {**data, **from_env.model_dump(exclude_unset=True), **overrides}
    return HubSettings.model_validate(merged)
