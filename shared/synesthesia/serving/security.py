"""Transport security and bearer tokens for every server.

- **TLS** from a certificate and key (PEM files); **mTLS** when a client CA is given (clients must
  present a certificate it signed). The files are re-read when they change (rotation without a
  restart: gRPC asks for the current certificate at each new handshake).
- **Tokens**: a file of hashed bearer tokens, one per line, ``<role> sha256:<hex> [name]``
  (``synesthesia token new --role read`` prints a token and its line). Roles: ``read`` (embed,
  query, get, list, describe, info) and ``write`` (everything ``read`` may do, plus upsert,
  delete, create, drop and snapshot). Every RPC must be listed in ``METHOD_ROLES``: a method
  added later is refused until it is placed there. Health and reflection stay open. A missing
  or unknown token is UNAUTHENTICATED, a token of too weak a role PERMISSION_DENIED. The file is
  re-read when it changes.
- **Binding beyond loopback** with neither TLS nor tokens refuses to start unless ``insecure``
  is set (``--insecure`` or ``SYNESTHESIA_INSECURE=1``), and then logs a loud warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from pydantic import BaseModel, Field

from synesthesia.serving.handlers import around_calls

log = logging.getLogger(__name__)

READ, WRITE = "read", "write"
ROLES = (READ, WRITE)
_RANK = {READ: 1, WRITE: 2}

_ENCODER = "/synesthesia.v1.EncoderService/"
_SEARCH = "/synesthesia.v1.SearchService/"
#: The role each RPC needs. Not listed = refused (PERMISSION_DENIED), so a new RPC must be placed.
METHOD_ROLES: dict[str, str] = {
    **{_ENCODER + m: READ for m in ("Embed", "EmbedStream", "Info")},
    **{
        _SEARCH + m: READ
        for m in ("Query", "QueryBatch", "Get", "ListCollections", "DescribeCollection", "Classify")
    },
    **{
        _SEARCH + m: WRITE
        for m in (
            "Upsert",
            "UpsertStream",
            "Delete",
            "CreateCollection",
            "DropCollection",
            "Snapshot",
        )
    },
}
#: Open to everyone: liveness/readiness probes and API discovery.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
AUTH_HEADER = "authorization"


class SecuritySettings(BaseModel):
    """Mixed into every server's settings (environment ``SYNESTHESIA_TLS_CERT`` …)."""

    tls_cert: Path | None = Field(default=None, description="PEM certificate chain: serve TLS")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA bundle: require client certificates it signed (mTLS)"
    )
    tokens_file: Path | None = Field(
        default=None, description="hashed bearer tokens, '<role> sha256:<hex> [name]' per line"
    )
    insecure: bool = Field(
        default=False, description="allow a non-loopback bind with neither TLS nor tokens"
    )


class SecurityError(RuntimeError):
    """A server refuses to start with these security settings; the message says why."""


# -- tokens ----------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(role: str, name: str = "") -> tuple[str, str]:
    """A fresh random token and its line for a tokens file."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    token = "syn_" + secrets.token_urlsafe(32)
    return token, f"{role} {hash_token(token)}" + (f" {name}" if name else "")


@dataclass(frozen=True)
class Principal:
    role: str
    name: str


def parse_tokens(text: str, source: str = "tokens file") -> dict[str, Principal]:
    out: dict[str, Principal] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[0] not in ROLES or not parts[1].startswith("sha256:"):
            raise SecurityError(
                f"{source} line {number}: expected '<read|write> sha256:<hex> [name]'"
            )
        digest = parts[1].lower()
        if len(digest) != len("sha256:") + 64:
            raise SecurityError(f"{source} line {number}: the sha256 digest must be 64 hex digits")
        out[digest] = Principal(parts[0], parts[2] if len(parts) > 2 else f"line {number}")
    return out


class TokenTable:
    """The tokens of a file, re-read when its modification time changes (checked at most once a
    second). A file that becomes unreadable or invalid keeps the last good table (logged)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked = 0.0
        self._table: dict[str, Principal] = {}
        self._load(first=True)

    def _load(self, first: bool = False) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            table = parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, SecurityError, UnicodeDecodeError) as exc:
            if first:
                raise SecurityError(f"cannot use tokens file {self.path}: {exc}") from None
            log.error(
                "tokens file %s not reloaded (keeping the previous tokens): %s", self.path, exc
            )
            return
        self._table, self._mtime = table, mtime
        if not first:
            log.info("tokens file %s reloaded (%d tokens)", self.path, len(table))

    def lookup(self, token: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= 1.0:
                self._checked = now
                self._load()
            table = self._table
        digest = hash_token(token)
        for known, principal in table.items():  # constant time per entry
            if hmac.compare_digest(known, digest):
                return principal
        return None


def bearer_token(metadata: Sequence[tuple[str, Any]] | Mapping[str, Any] | None) -> str | None:
    items = metadata.items() if isinstance(metadata, Mapping) else (metadata or ())
    for key, value in items:
        if str(key).lower() == AUTH_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def authorize(
    method: str, metadata: Sequence[tuple[str, Any]] | Mapping[str, Any] | None, tokens: TokenTable
) -> tuple[grpc.StatusCode, str] | None:
    """None when the call may proceed, else the status and message to refuse it with."""
    if method.startswith(OPEN_PREFIXES):
        return None
    needed = METHOD_ROLES.get(method)
    if needed is None:
        return grpc.StatusCode.PERMISSION_DENIED, f"{method} is not open to any role"
    token = bearer_token(metadata)
    if token is None:
        return (
            grpc.StatusCode.UNAUTHENTICATED,
            "this server needs a bearer token: send metadata 'authorization: Bearer <token>'",
        )
    principal = tokens.lookup(token)
    if principal is None:
        return grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid"
    if _RANK[principal.role] < _RANK[needed]:
        return (
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method.rsplit('/', 1)[-1]} needs a {needed} token; this one is {principal.role}",
        )
    return None


def _rejecting(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> Any:
    """``handler``'s kind, answering every call with ``code`` before it runs."""

    @contextlib.asynccontextmanager
    async def refused(context: aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    return around_calls(handler, refused)


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, tokens: TokenTable) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        refused = authorize(details.method, details.invocation_metadata, self.tokens)
        return handler if refused is None else _rejecting(handler, *refused)


# -- TLS ---------------------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecurityError(f"cannot read the {what} {path}: {exc.strerror}") from None


def server_credentials(s: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS (mTLS with a client CA) credentials that re-read the files when they change."""
    if s.tls_cert is None and s.tls_key is None:
        if s.tls_client_ca is not None:
            raise SecurityError("tls_client_ca (mTLS) needs tls_cert and tls_key too")
        return None
    if s.tls_cert is None or s.tls_key is None:
        raise SecurityError("TLS needs both tls_cert and tls_key")
    files = [p for p in (s.tls_cert, s.tls_key, s.tls_client_ca) if p is not None]

    def stamp() -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime for p in files)

    def config() -> Any:
        assert s.tls_cert is not None and s.tls_key is not None
        ca = _read(s.tls_client_ca, "client CA") if s.tls_client_ca else None
        return grpc.ssl_server_certificate_configuration(
            [(_read(s.tls_key, "TLS key"), _read(s.tls_cert, "TLS certificate"))],
            root_certificates=ca,
        )

    initial = config()
    state = {"stamp": stamp()}

    def fetch() -> Any:
        try:
            now = stamp()
            if now == state["stamp"]:
                return None  # unchanged: keep the current configuration
            fresh = config()
        except (OSError, SecurityError) as exc:
            log.error("TLS files not reloaded (keeping the previous ones): %s", exc)
            return None
        state["stamp"] = now
        log.info("TLS certificate reloaded from %s", s.tls_cert)
        return fresh

    return grpc.dynamic_ssl_server_credentials(
        initial, fetch, require_client_authentication=s.tls_client_ca is not None
    )


def channel_credentials(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials | None:
    """Client-side TLS: trust ``ca`` (None with a cert: the system roots) and present
    ``cert``/``key`` for mTLS. None when neither is given (plaintext)."""
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise SecurityError("a client certificate needs both its cert and key files")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA bundle") if ca else None,
        private_key=_read(key, "client key") if key else None,
        certificate_chain=_read(cert, "client certificate") if cert else None,
    )


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, s: SecuritySettings) -> None:
    """Refuse a non-loopback bind with neither TLS nor tokens, unless ``insecure``."""
    if is_loopback(host) or s.tls_cert is not None or s.tokens_file is not None:
        return
    if not s.insecure:
        raise SecurityError(
            f"refusing to listen on {host} without TLS or tokens: anyone who reaches the port "
            "could read and change everything. Set SYNESTHESIA_TLS_CERT/SYNESTHESIA_TLS_KEY "
            "and/or SYNESTHESIA_TOKENS_FILE (docs/operations.md, 'Security'), bind 127.0.0.1, "
            "or accept the risk with --insecure (SYNESTHESIA_INSECURE=1)."
        )
    log.warning(
        "INSECURE: listening on %s with neither TLS nor tokens (insecure is set); anyone who "
        "reaches this port can read and change everything",
        host,
    )


def server_interceptors(s: SecuritySettings | None) -> list[aio.ServerInterceptor]:
    if s is None or s.tokens_file is None:
        return []
    return [AuthInterceptor(TokenTable(s.tokens_file))]
