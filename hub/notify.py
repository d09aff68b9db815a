"""Alerts that reach a phone: e-mail over SMTP and a generic SMS/IM gateway webhook.

Who gets what is config (``incidents.contacts``): each contact names a routing recipient (a
station, a manager, a supervisor recipient such as ``north-sgt``, the technicians), and an
e-mail address and/or a gateway address, and a language (``en`` or ``zh-CN``). When the
:class:`~ringwatch.hub.routing.Router` queues an alert for a recipient it also queues one
``email`` / ``gateway`` delivery per contact (:func:`contact_deliveries`), rendered in the
contact's language at that moment, in the same transaction as the incident change. The
:class:`~ringwatch.hub.webhooks.Dispatcher` sends them with the webhooks' retry, backoff
and exactly-once accounting (a delivery is marked sent once and never sent again, across
restarts: the rows are the state). A missed stage is routed to the supervisors, so their
contacts get it by e-mail or SMS too.

Receivers can drop a repeat caused by a crash between sending and committing: e-mails carry
``Message-ID: <alert-id.recipient@ringwatch>``, gateway POSTs ``Idempotency-Key``.

The gateway contract (docs/evidence.md): ``POST <url>`` with JSON ``{"to", "text",
"language", "alert_id", "incident_id", "reason", "colour", "kind", "site", "url"}``,
headers ``Idempotency-Key`` and (if configured) ``X-Ringwatch-Token``; any 2xx is success.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from ringwatch.errors import ConfigError
from ringwatch.hub.incident_tables import Delivery
from ringwatch.hub.notify_config import ContactConfig
from ringwatch.hub.terms import DEFAULT_LANGUAGE, term
from ringwatch.hub.timezones import DEFAULT_ZONE, site_time
from ringwatch.hub.webhooks import (
    HttpResult,
    Sender,
    UrllibTransport,
    WebhookTransport,
    connection_kind,
)

if TYPE_CHECKING:
    from ringwatch.hub.incident_config import IncidentsConfig
    from ringwatch.hub.settings import HubSettings

log = logging.getLogger(__name__)

EMAIL, GATEWAY = "email", "gateway"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "new": "New alert", "update": "Update", "escalation": "Escalating",
        "missed": "Response stage MISSED", "confirmed": "Match confirmed",
        "rejected": "Match rejected", "step": "Step done", "closed": "Closed",
        "subject": "{head}: {colour} {title}", "headline": "{head}: {title}",
        "where": "{kind} at {site}, camera {camera}, ring {ring}",
        "when": "{status} / {created_at}", "open": "Open: {link}",
        "footer": "Sent by Ringwatch. Reply is not monitored.",
    },
    "zh-CN": {
        "new": "新告警", "update": "告警更新", "escalation": "告警已升级",
        "missed": "处置环节超时", "confirmed": "比中已确认",
        "rejected": "比中已排除", "step": "处置环节已完成", "closed": "已结束处置",
        "subject": "{head}：{colour} {title}", "headline": "{head}：{title}",
        "where": "{kind}，地点 {site}，摄像机 {camera}，防控圈 {ring}",
        "when": "状态 {status}，发生时间 {created_at}", "open": "查看详情：{link}",
        "footer": "本消息由 Ringwatch 系统自动发送，请勿直接回复。",
    },
}  # fmt: skip
LANGUAGES = tuple(TEXT)


def render(
    alert: dict[str, Any], language: str, link: str | None, time_zone: str = DEFAULT_ZONE
) -> tuple[str, str]:
    """(subject, text) of one alert in ``language`` (en, zh-CN), its time in the site's
    ``time_zone`` with the offset named (the reader is away from the console)."""
    lang = language if language in TEXT else DEFAULT_LANGUAGE
    tx = TEXT[lang]
    head = tx.get(alert["reason"], alert["reason"])
    colour = (
        term(lang, "colour", alert["colour"]) if alert.get("colour")
        else term(lang, "level", alert.get("level"))
    )  # fmt: skip
    title = (alert.get("titles") or {}).get(lang) or alert["title"]  # hub/i18n.py titles
    subject = tx["subject"].format(head=head, colour=colour, title=title)
    lines = [
        tx["headline"].format(head=head, title=title),
        tx["where"].format(kind=term(lang, "kind", alert["kind"]), site=alert["site"],
                           camera=alert.get("camera") or "-",
                           ring=term(lang, "ring", alert.get("ring")) or "-"),
        tx["when"].format(status=term(lang, "status", alert["status"]),
                          created_at=site_time(alert["created_at"], time_zone)),
    ]  # fmt: skip
    if link:
        lines.append(tx["open"].format(link=link))
    subject = f"[Ringwatch] {' '.join(subject.split())}"[:200]
    return subject, "\n".join([*lines, "", tx["footer"]])


def contact_deliveries(
    contacts: list[ContactConfig],
    recipient: str,
    alert: dict[str, Any],
    public_url: str | None,
    time_zone: str = DEFAULT_ZONE,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(channel, target, payload) for every contact of ``recipient`` that wants this kind;
    times in the site's ``time_zone``."""
    link = (
        None
        if public_url is None
        else f"{public_url.rstrip('/')}/#/incident/{alert['incident_id']}"
    )
    out = []
    for c in contacts:
        if c.recipient != recipient or (c.kinds is not None and alert["kind"] not in c.kinds):
            continue
        subject, text = render(alert, c.language, link, time_zone)
        base = {"alert_id": alert["alert_id"], "incident_id": alert["incident_id"],
                "recipient": recipient, "language": c.language, "subject": subject,
                "text": text, "reason": alert["reason"], "colour": alert.get("colour"),
                "kind": alert["kind"], "site": alert["site"], "url": link}  # fmt: skip
        if c.email is not None:
            out.append((EMAIL, c.email, base))
        if c.gateway_url is not None and c.address is not None:
            out.append((GATEWAY, str(c.gateway_url), {**base, "to": c.address}))
    return out


class SmtpSettings(BaseModel):
    """Where e-mail goes out (from the hub settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = 25
    sender: str = "ringwatch@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False  # SMTPS (implicit TLS, usually port 465)


class SmtpSender:
    """Sends ``email`` deliveries over SMTP (smtplib; TLS verified with the system CAs)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, delivery: Delivery, timeout_s: float) -> HttpResult:
        p, s = delivery.payload, self.settings
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = s.sender, delivery.target, p["subject"]
        msg["Message-ID"] = f"<{p['alert_id']}.{p['recipient']}@ringwatch>"
        msg["Date"] = formatdate(usegmt=True)
        msg.set_content(p["text"])
        msg["Content-Language"] = p["language"]  # after set_content, which resets Content-*
        try:
            factory = smtplib.SMTP_SSL if s.tls else smtplib.SMTP
            with factory(s.host, s.port, timeout=timeout_s) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password)
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            return HttpResult(
                None, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500], "mail_refused"
            )
        except (smtplib.SMTPException, OSError) as exc:
            return HttpResult(None, f"{type(exc).__name__}: {exc}"[:500], connection_kind(exc))
        return HttpResult(250)


class GatewaySender:
    """Sends ``gateway`` deliveries as JSON POSTs (see the module docstring)."""

    def __init__(
        self, tokens: dict[str, str] | None = None, transport: WebhookTransport | None = None
    ) -> None:
        self.tokens = tokens or {}
        self.transport = transport or UrllibTransport()

    def send(self, delivery: Delivery, timeout_s: float) -> HttpResult:
        p = delivery.payload
        keys = ("to", "text", "language", "alert_id", "incident_id", "reason", "colour", "kind",
                "site", "url")  # fmt: skip
        body = json.dumps({k: p.get(k) for k in keys}).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{p['alert_id']}:{p['recipient']}:{p['to']}",
            "User-Agent": "ringwatch-hub",
        }
        token = self.tokens.get(f"{delivery.target} {p['to']}")
        if token is not None:
            headers["X-Ringwatch-Token"] = token
        return self.transport.post(delivery.target, body, headers, timeout_s)


def gateway_tokens(contacts: list[ContactConfig]) -> dict[str, str]:
    return {f"{c.gateway_url} {c.address}": c.gateway_token for c in contacts
            if c.gateway_url is not None and c.gateway_token}  # fmt: skip


def smtp_settings(
    url: str, sender: str, password_file: Path | None, starttls: bool
) -> SmtpSettings:
    """Parse ``smtp://[user@]host:port`` / ``smtps://`` and read the password file."""
    parts = urlsplit(url)
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError(f"hub settings: smtp_password_file {password_file}: {exc}") from None
    tls = parts.scheme == "smtps"
    return SmtpSettings(
        host=parts.hostname or "localhost",
        port=parts.port or (465 if tls else 25),
        sender=sender,
        username=parts.username,
        password=password,
        starttls=starttls,
        tls=tls,
    )


def notify_senders(settings: HubSettings, config: IncidentsConfig) -> dict[str, Sender]:
    """The e-mail and gateway senders the hub's settings and contacts call for."""
    senders: dict[str, Sender] = {}
    if settings.smtp_url is not None:
        senders[EMAIL] = SmtpSender(
            smtp_settings(settings.smtp_url, settings.smtp_from, settings.smtp_password_file,
                          settings.smtp_starttls)
        )  # fmt: skip
    elif any(c.email for c in config.contacts):
        log.warning("contacts have e-mail addresses but smtp_url is unset: e-mails stay pending")
    if any(c.gateway_url for c in config.contacts):
        senders[GATEWAY] = GatewaySender(gateway_tokens(config.contacts))
    return senders
