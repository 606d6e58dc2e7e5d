"""The caller's credentials, read from the SOAP header while the envelope streams in.

Two forms are accepted: the WSDL-declared ``AuthHeader`` (what generated stubs send) and a
WS-Security ``UsernameToken`` (Username, Password with its Type, Nonce, wsu:Created). The envelope
reader (:mod:`gateway.soap.streaming`) feeds the header's elements to a :class:`HeaderCollector` and
authenticates with what it collected when it reaches ``<Body>``, before any payload byte is decoded.

A UsernameToken's PasswordDigest cannot be checked: it is a hash of nonce, time and the secret
itself, and the gateway stores only a hash of each secret. It is refused with a message that says
so rather than with the generic refusal. Freshness of Created and replay of Nonce are the
exchange's rules (:meth:`gateway.exchange.service.ExchangeService.authenticate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.errors import AuthenticationFailed
from gateway.exchange.results import Caller
from gateway.exchange.service import ExchangeService
from gateway.soap.namespaces import NAMESPACE, RELAY_NAMESPACE

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = f"{_TOKEN_PROFILE}#PasswordText"
PASSWORD_DIGEST = f"{_TOKEN_PROFILE}#PasswordDigest"

PasswordType = Literal["text", "digest"]


@dataclass(frozen=True)
class HeaderCredentials:
    """What the SOAP header said about the caller; ``password_type`` is None for an AuthHeader."""

    agency_code: str | None
    secret: str | None
    password_type: PasswordType | None = None
    nonce: str | None = None
    created: str | None = None


NO_CREDENTIALS = HeaderCredentials(None, None)

_AUTH_HEADER = f"{NAMESPACE} AuthHeader"
_PEER_HEADER = f"{RELAY_NAMESPACE} PeerHeader"
"""What gateway instances send on /relay: the instance id travels as ``agency_code``."""
_SECURITY = f"{WSSE} Security"
_FIELDS = {
    (_AUTH_HEADER, f"{NAMESPACE} agencyCode"): "agency_code",
    (_AUTH_HEADER, f"{NAMESPACE} secret"): "secret",
    (_PEER_HEADER, f"{RELAY_NAMESPACE} instanceId"): "agency_code",
    (_PEER_HEADER, f"{RELAY_NAMESPACE} secret"): "secret",
    (_SECURITY, f"{WSSE} Username"): "agency_code",
    (_SECURITY, f"{WSSE} Password"): "secret",
    (_SECURITY, f"{WSSE} Nonce"): "nonce",
    (_SECURITY, f"{WSU} Created"): "created",
}
"""(header block, field element) in expat's ``"uri local"`` names -> HeaderCredentials field."""


class HeaderCollector:
    """Collects credentials from expat events inside ``Envelope/Header``, in bounded memory.

    ``depth`` is counted from the header block (1: AuthHeader or Security, 2: its children, 3: the
    UsernameToken's children). The first AuthHeader, or Security holding a UsernameToken, wins, as
    generated stubs send one of them.
    """

    def __init__(self) -> None:
        self._block: str | None = None
        self._values: dict[str, str] = {}
        self._field: str | None = None
        self._field_depth = 0
        self._parts: list[str] = []
        self._password_type: PasswordType | None = None
        self._in_token = False
        self._found: HeaderCredentials | None = None

    def start(self, name: str, attrs: dict[str, str], depth: int) -> None:
        if self._found is not None:
            return
        if depth == 1:
            self._block = name if name in (_AUTH_HEADER, _PEER_HEADER, _SECURITY) else None
            self._values, self._password_type = {}, None
            return
        if self._block is None:
            return
        if depth == 2:
            self._in_token = name == f"{WSSE} UsernameToken"
        in_token = self._block == _SECURITY and depth == 3 and self._in_token
        if (self._block in (_AUTH_HEADER, _PEER_HEADER) and depth == 2) or in_token:
            field = _FIELDS.get((self._block, name))
            if field is not None:
                self._field, self._field_depth, self._parts = field, depth, []
            if name == f"{WSSE} Password":
                # An unknown Type leaves the token without a usable password: refused like a wrong one.
                self._password_type = _password_type(attrs.get("Type"))

    def text(self, text: str) -> None:
        if self._field is not None:
            self._parts.append(text)

    def end(self, depth: int) -> None:
        if self._field is not None and depth == self._field_depth:
            value = "".join(self._parts).strip()
            if value:
                self._values[self._field] = value
            self._field = None
        if depth == 1 and self._block is not None and self._found is None:
            values = self._values
            if self._block in (_AUTH_HEADER, _PEER_HEADER):
                self._found = HeaderCredentials(values.get("agency_code"), values.get("secret"))
            elif "agency_code" in values or "secret" in values:
                known = self._password_type is not None
                self._found = HeaderCredentials(
                    values.get("agency_code"),
                    values.get("secret") if known else None,
                    self._password_type or "text",
                    values.get("nonce"),
                    values.get("created"),
                )
            self._block = None

    def credentials(self) -> HeaderCredentials:
        """What was found, or no credentials at all."""
        return self._found or NO_CREDENTIALS


def _password_type(declared: str | None) -> PasswordType | None:
    """The Type attribute of a Password: absent means text (WSS UsernameToken Profile 1.0, 4.1)."""
    if declared is None or declared.strip() in (PASSWORD_TEXT, "PasswordText", "wsse:PasswordText"):
        return "text"
    if declared.strip() in (PASSWORD_DIGEST, "PasswordDigest", "wsse:PasswordDigest"):
        return "digest"
    return None


def authenticate(exchange: ExchangeService, credentials: HeaderCredentials) -> Caller:
    """The caller the credentials prove, or AuthenticationFailed; called once per request."""
    if credentials.password_type == "digest":
        raise AuthenticationFailed(
            "Authentication failed: the WS-Security UsernameToken carries a PasswordDigest, which this gateway "
            "cannot check because it stores only a hash of each secret. Send the password as PasswordText "
            "(over TLS) or use the AuthHeader."
        )
    return exchange.authenticate(
        credentials.agency_code, credentials.secret, nonce=credentials.nonce, created=credentials.created
    )
