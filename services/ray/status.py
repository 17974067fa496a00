"""Domain errors -> gRPC status codes on Ray Serve's gRPC context, the Ray twin of the standalone
servers' error interceptor: bad input is INVALID_ARGUMENT with the message naming the item;
anything unexpected is INTERNAL with a generic message (the traceback goes to the replica log)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from ray.exceptions import RayTaskError
from synesthesia.errors import PermissionDenied, SynesthesiaError, Unauthenticated
from synesthesia.serving.security import TokenTable, authorize

log = logging.getLogger(__name__)


def message_of(exc: BaseException) -> str:
    """The domain message; an error raised in another replica arrives as a RayTaskError that is
    also an instance of the original class, whose str() would carry the remote traceback."""
    cause = exc.cause if isinstance(exc, RayTaskError) else None
    return str(cause) if cause is not None else str(exc)


def code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, SynesthesiaError):
        return getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


class CallGuard:
    """The bearer-token check of the standalone servers (serving/security.py), for calls that
    reach a deployment through Ray's gRPC proxy (the proxy hands over the request metadata).
    Calls between deployments (handles, no gRPC context) are internal and not checked."""

    def __init__(self, service: str, tokens_file: Any | None) -> None:
        self.service = service  # e.g. "synesthesia.v1.SearchService"
        self.tokens = TokenTable(tokens_file) if tokens_file else None

    def check(self, context: Any | None, method: str) -> None:
        if self.tokens is None or context is None:
            return
        refused = authorize(f"/{self.service}/{method}", context.invocation_metadata(), self.tokens)
        if refused is not None:
            code, message = refused
            cls = Unauthenticated if code == grpc.StatusCode.UNAUTHENTICATED else PermissionDenied
            raise cls(message)


@contextmanager
def grpc_status(context: Any | None, method: str, guard: CallGuard | None = None) -> Iterator[None]:
    """Checks the caller's token (``guard``), sets the status of a failing call on ``context``
    (a RayServegRPCContext, or None when the call came through a deployment handle) and
    re-raises; Ray keeps a status set before raising."""
    try:
        if guard is not None:
            guard.check(context, method)
        yield
    except SynesthesiaError as exc:
        log.info("%s -> %s: %s", method, code_of(exc).name, message_of(exc))
        if context is not None:
            context.set_code(code_of(exc))
            context.set_details(message_of(exc))
        raise
    except Exception:
        log.exception("unexpected error in %s", method)
        if context is not None:
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details(f"internal error in {method}; see the replica log")
        raise
