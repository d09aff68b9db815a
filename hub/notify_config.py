"""The ``incidents.contacts`` config section: who hears a routing recipient's alerts by e-mail
or through an SMS/IM gateway, in which language: ``zh-CN`` (the default) or ``en`` (issue 14;
sent by :mod:`ringwatch.hub.notify`, times in the site's time zone).

Example::

    incidents:
      public_url: https://ringwatch.example
      contacts:
        - {recipient: st-north, email: duty@north.example, language: en}
        - {recipient: north-sgt, gateway_url: "https://sms.example/send", address: "+8613800000000",
           language: zh-CN}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from ringwatch.contract.zones import Ident
from ringwatch.hub.terms import LANGUAGE_PATTERN


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactConfig(_Section):
    """One person or duty phone that hears a routing recipient's alerts."""

    recipient: Ident = Field(description="Routing recipient: station, manager, supervisor id.")
    name: str = Field(default="", max_length=200, description="Who this is (for the log).")
    email: str | None = Field(
        default=None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=254, description="E-mail."
    )
    gateway_url: HttpUrl | None = Field(default=None, description="SMS/IM gateway endpoint.")
    address: str | None = Field(
        default=None, max_length=200, description="Phone number or IM handle for the gateway."
    )
    gateway_token: str | None = Field(
        default=None, max_length=500, description="X-Ringwatch-Token sent to the gateway."
    )
    # The people alerted are Chinese police officers and property managers, as at the
    # console (whose first language is zh-CN): a contact reads Chinese unless it says en.
    language: str = Field(
        default="zh-CN", pattern=LANGUAGE_PATTERN, description="zh-CN (default) or en."
    )
    kinds: list[str] | None = Field(default=None, description="Incident kinds (all if unset).")

    @model_validator(mode="after")
    def _reachable(self) -> ContactConfig:
        if self.email is None and self.gateway_url is None:
            raise ValueError("a contact needs an email or a gateway_url")
        if self.gateway_url is not None and not self.address:
            raise ValueError("a gateway contact needs an address (phone number or handle)")
        return self
