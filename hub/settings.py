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
| colour_policy | - | outer/perimeter/inner = yellow/orange/red; red tier +1 | colours |
| max_clock_ahead_s | RINGWATCH_HUB_MAX_CLOCK_AHEAD_S | 86400 | later times: dead letter |
| max_message_age_s | RINGWATCH_HUB_MAX_MESSAGE_AGE_S | unset: after 2000 | older: dead letter |
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ringwatch.configfile import format_config_errors, read_yaml
from ringwatch.contract.colours import ColourPolicy
from ringwatch.contract.messages import TimeBounds
from ringwatch.errors import ConfigError

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
