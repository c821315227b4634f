"""Who is asking: a bearer token or a signed session cookie; CSRF tokens for the forms.

Two roles: ``admin`` (may retry, cancel, switch routing) and ``readonly``.  Tokens are the
config's by reference (``ops.secrets.web_token``); every comparison is ``hmac.compare_digest``.
A session cookie carries role, user name and issue time, signed with HMAC-SHA256 under a key
derived from the tokens: a restarted coordinator accepts the sessions it issued before (the
live stream reconnects logged in), and changing a token ends every session.  With no token
configured (loopback only, see ``config.web``) the console still authenticates everyone: a
read-only token is made for this run and written, readable by its owner only, to
``<state_dir>/web-token`` (``run_token``), so another user of the machine cannot read the
console; the path is shown, never the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adw_modules.config.web import WebConfig
from adw_modules.ops.redact import Redactor
from adw_modules.ops.secrets import web_token

COOKIE = "adw_session"
LOGIN_COOKIE = "adw_login"  # a random nonce the login form's CSRF token is bound to
SESSION_MAX_AGE_S = 12 * 3600
MAX_USER_CHARS = 64
ADMIN = "admin"
READONLY = "readonly"


@dataclass(frozen=True)
class Principal:
    role: str
    user: str
    session: str  # the signed cookie value ("" for bearer and tokenless access): CSRF tokens bind to it

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


def clean_user(name: str, role: str) -> str:
    """A display name as typed at login: printable, at most MAX_USER_CHARS, else the role's name."""
    kept = "".join(ch for ch in name if ch.isprintable()).strip()[:MAX_USER_CHARS]
    return kept or role


class Auth:
    def __init__(
        self, admin_token: str | None, readonly_token: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.tokens = {role: t for role, t in ((ADMIN, admin_token), (READONLY, readonly_token)) if t}
        secret = b"\0".join(t.encode() for t in (admin_token or "", readonly_token or ""))
        self.key = hmac.new(secret, b"adw-web-session-v1", hashlib.sha256).digest()
        self.clock = clock

    @classmethod
    def from_config(
        cls, web: WebConfig, environ: Mapping[str, str], redactor: Redactor, state_dir: Path | None = None
    ) -> Auth:
        """Fetch both tokens (raises SecretError saying which is missing, never its value).  With
        neither configured, a read-only token made for this run (``run_token`` in ``state_dir``)."""
        admin = web_token(web.token_env, web.token_command, environ, redactor, "token")
        readonly = web_token(web.readonly_token_env, web.readonly_token_command, environ, redactor, "readonly_token")
        if admin or readonly or state_dir is None:
            return cls(admin, readonly)
        made = run_token(state_dir / RUN_TOKEN_FILE)
        redactor.add(made)
        auth = cls(None, made)
        auth.run_token_path = state_dir / RUN_TOKEN_FILE
        return auth

    run_token_path: Path | None = None  # set when no token is configured (see ``run_token``)

    @property
    def open(self) -> bool:
        """No token at all (only an Auth built without one, as tests may): read-only for everyone."""
        return not self.tokens

    @property
    def loopback_only(self) -> bool:
        """No token configured: the console may listen on a loopback address only."""
        return not self.tokens or self.run_token_path is not None

    def role_of_token(self, token: str) -> str | None:
        found = None
        for role, expected in self.tokens.items():  # every token compared, in constant time each
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = role
        return found

    def from_request(self, authorization: str | None, cookie: str | None) -> Principal | None:
        if self.open:
            return Principal(READONLY, "local", "")
        if authorization and authorization[:7].lower() == "bearer ":
            role = self.role_of_token(authorization[7:].strip())
            return None if role is None else Principal(role, f"{role} token", "")
        if cookie:
            return self.session_principal(cookie)
        return None

    # -- sessions
    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def issue(self, role: str, user: str) -> str:
        payload = json.dumps({"r": role, "u": user, "t": int(self.clock())}, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def session_principal(self, cookie: str) -> Principal | None:
        body, _, signature = cookie.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = json.loads(payload)
            role, user, issued = str(data["r"]), str(data["u"]), int(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        if role not in self.tokens or not 0 <= self.clock() - issued <= SESSION_MAX_AGE_S:
            return None
        return Principal(role, user, cookie)

    # -- CSRF: a token bound to the session, so a page of another site cannot post with it
    def csrf_token(self, principal: Principal) -> str:
        return self._sign(b"csrf|" + principal.session.encode())

    def csrf_ok(self, principal: Principal, given: str | None) -> bool:
        if not principal.session:
            return True  # a bearer token is not sent by a browser on its own: nothing to forge
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token(principal).encode())

    # -- login CSRF: no session yet, so the form's token binds to a nonce cookie set with the form
    def login_csrf(self, nonce: str) -> str:
        return self._sign(b"login|" + nonce.encode())

    def login_csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        """The form posted came from our login page in this browser (a page elsewhere cannot read
        the nonce cookie nor the token, so it cannot log the browser in under its own token)."""
        if not nonce or not given:
            return False
        return hmac.compare_digest(given.encode(), self.login_csrf(nonce).encode())


RUN_TOKEN_FILE = "web-token"


def run_token(path: Path) -> str:
    """A new random token in ``path`` (mode 0600, replaced atomically): the console's read-only
    token for this run when the config names none; its owner reads it with ``cat``."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.replace(partial, path)
    return token
