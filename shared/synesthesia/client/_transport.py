"""What every client shares: the channel (plaintext or TLS/mTLS), the bearer token, deadlines,
retries with backoff, wait-for-ready, and gRPC statuses raised as ``synesthesia.errors``."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from synesthesia.errors import InvalidInput, SynesthesiaError, Unavailable, error_for_status
from synesthesia.serving.admission import RETRY_AFTER_HEADER
from synesthesia.serving.security import SecurityError, auth_metadata, channel_credentials
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES, channel_options

#: Environment read when a client is given no ``tls``/``token`` of its own.
ENV_TLS_CA = "SYNESTHESIA_CLIENT_TLS_CA"
ENV_TLS_CERT = "SYNESTHESIA_CLIENT_TLS_CERT"
ENV_TLS_KEY = "SYNESTHESIA_CLIENT_TLS_KEY"
ENV_TOKEN = "SYNESTHESIA_TOKEN"

RETRYABLE = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})


@dataclass(frozen=True)
class TLS:
    """Client-side TLS: trust ``ca`` (None: the system's roots) and, for mTLS, present
    ``cert``/``key``. ``server_name``: the name the server's certificate must carry, when it is
    not the target's host (e.g. an address reached through a tunnel)."""

    ca: Path | str | None = None
    cert: Path | str | None = None
    key: Path | str | None = None
    server_name: str | None = None

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TLS | None:
        """``SYNESTHESIA_CLIENT_TLS_CA`` / ``_CERT`` / ``_KEY``; None when none is set."""
        env = os.environ if env is None else env
        ca, cert, key = (env.get(k) or None for k in (ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY))
        return cls(ca, cert, key) if ca or cert or key else None

    def credentials(self) -> grpc.ChannelCredentials:
        def path(p: Path | str | None) -> Path | None:
            return Path(p) if p else None

        try:
            creds = channel_credentials(path(self.ca), path(self.cert), path(self.key))
        except SecurityError as exc:
            raise InvalidInput(str(exc)) from None
        return creds or grpc.ssl_channel_credentials()


TLSOption = TLS | Path | str | bool | None


def resolve_tls(tls: TLSOption) -> TLS | None:
    """None: from the environment; False: plaintext; True: TLS with the system's roots; a path:
    the CA file to trust."""
    if tls is None:
        return TLS.from_env()
    if tls is False:
        return None
    if tls is True:
        return TLS()
    return tls if isinstance(tls, TLS) else TLS(ca=tls)


def resolve_token(token: str | None) -> str | None:
    """None: ``SYNESTHESIA_TOKEN`` (if set); "": no token."""
    if token is None:
        return os.environ.get(ENV_TOKEN) or None
    return token or None


@dataclass(frozen=True)
class Retry:
    """Retries of UNAVAILABLE and RESOURCE_EXHAUSTED, with exponential backoff and jitter, within
    the call's timeout. A server's ``retry-after-ms`` hint replaces the backoff (never sooner).
    Calls that are not idempotent (creating or dropping a collection, the streams) are retried
    only when the server shed them before running them (RESOURCE_EXHAUSTED)."""

    max_retries: int = 4
    initial_backoff: float = 0.1  # seconds
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5  # the delay is drawn from [(1 - jitter) * backoff, backoff]

    def delay(self, attempt: int, hint_s: float | None) -> float:
        if hint_s is not None:
            return hint_s * random.uniform(1.0, 1.0 + self.jitter)
        backoff = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        return random.uniform((1.0 - self.jitter) * backoff, backoff)


def _code_name(err: grpc.RpcError) -> str:
    code = err.code()  # type: ignore[attr-defined]
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _retry_after_s(err: grpc.RpcError) -> float | None:
    try:
        trailing = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # some errors (a local failure) carry none
        return None
    for key, value in trailing:
        if key == RETRY_AFTER_HEADER:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                return None
    return None


def error_of(err: grpc.RpcError) -> SynesthesiaError:
    name = _code_name(err)
    return error_for_status(name, err.details() or name)  # type: ignore[attr-defined]


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Raises a ``grpc.RpcError`` from inside as the matching ``synesthesia.errors`` exception."""
    try:
        yield
    except grpc.RpcError as err:
        raise error_of(err) from err


_NUMBERED = {noun: re.compile(rf"\b{noun} (\d+)\b") for noun in ("item", "query")}


T = TypeVar("T")


async def in_order(calls: Sequence[Awaitable[T]]) -> list[T]:
    """The results of ``calls``, run at once, in order. A single call (the common case) is
    awaited as it is: no task to schedule."""
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


@contextmanager
def item_numbers(offset: int, noun: str = "item") -> Iterator[None]:
    """Errors of a chunk that starts at the caller's item ``offset`` name items in the caller's
    numbering ('item 120', not 'item 20'); ``.index`` is the first item named. ``noun``: what
    the server calls them ("item", or "query" for a QueryBatch)."""
    pattern = _NUMBERED[noun]
    try:
        yield
    except SynesthesiaError as err:
        found = pattern.search(err.message)
        if found is None:
            raise
        message = pattern.sub(lambda m: f"{noun} {int(m.group(1)) + offset}", err.message)
        new = type(err)(message, code=err.code)
        new.index = int(found.group(1)) + offset
        raise new from err.__cause__


class _ClientBase:
    """Target, deadline, message limits, credentials, retries and call metadata.

    ``tls``: a ``TLS``, a CA file path, True (system roots), False (plaintext) or None (from
    ``SYNESTHESIA_CLIENT_TLS_*``, else plaintext). ``token``: a bearer token (None: from
    ``SYNESTHESIA_TOKEN``). ``max_retries``/``retry``: see ``Retry``. ``wait_for_ready``: a
    call to a server that is not up yet waits for it (up to the timeout) instead of failing at
    once. ``application`` picks the Ray Serve application behind a shared Ray gRPC proxy; the
    standalone services ignore it. ``keepalive=False`` sends no keepalive pings (for a client
    that may sit idle for long, like the search page). ``max_concurrency``: chunks in flight at
    once (the asyncio clients)."""

    def __init__(
        self,
        target: str,
        timeout: float = 60.0,
        batch_size: int = 64,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        application: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        keepalive: bool = True,
        *,
        tls: TLSOption = None,
        token: str | None = None,
        max_retries: int | None = None,
        retry: Retry | None = None,
        wait_for_ready: bool = True,
        max_concurrency: int = 4,
    ) -> None:
        if batch_size < 1 or max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be >= 1")
        self.target = target
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.tls = resolve_tls(tls)
        self.metadata = (
            *((("application", application),) if application else ()),
            *auth_metadata(resolve_token(token)),
            *metadata,
        )
        retry = retry or Retry()
        self.retry = retry if max_retries is None else replace(retry, max_retries=max_retries)
        self.wait_for_ready = wait_for_ready
        self.max_concurrency = max_concurrency
        options = channel_options(max_message_bytes)
        self._options = options if keepalive else [o for o in options if "keepalive" not in o[0]]

    def _call_kwargs(self, timeout: float | None = None) -> dict[str, Any]:
        request_id = ("x-request-id", uuid.uuid4().hex[:16])
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": (request_id, *self.metadata),
            "wait_for_ready": self.wait_for_ready,
        }

    def _retry_delay(
        self, err: grpc.RpcError, attempt: int, idempotent: bool, deadline: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        name = _code_name(err)
        if name not in RETRYABLE or attempt >= self.retry.max_retries:
            return None
        hint = _retry_after_s(err)
        if not idempotent and not (name == "RESOURCE_EXHAUSTED" and hint is not None):
            return None
        delay = self.retry.delay(attempt, hint)
        return delay if time.monotonic() + delay < deadline else None

    def _final_error(self, err: grpc.RpcError, connected: bool, timeout: float) -> Exception:
        """A deadline spent waiting for a server that never answered is UNAVAILABLE."""
        if _code_name(err) == "DEADLINE_EXCEEDED" and not connected:
            return Unavailable(f"{self.target} could not be reached within {timeout:g} s")
        return error_of(err)


class _SyncClient(_ClientBase):
    """A blocking channel, closed by ``close()`` or at the end of a ``with`` block."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        if self.tls is None:
            self._channel = grpc.insecure_channel(target, options=self._options)
        else:
            options = [*self._options, *self.tls.channel_options()]
            self._channel = grpc.secure_channel(target, self.tls.credentials(), options=options)

    def _connected(self) -> bool:
        """The channel is READY (a private call: a subscription's polling thread races close)."""
        try:
            from grpc import _common

            raw = self._channel._channel.check_connectivity_state(False)  # type: ignore[attr-defined]
            state = _common.CYGRPC_CONNECTIVITY_STATE_TO_CHANNEL_CONNECTIVITY[raw]
        except Exception:  # unknown: report the status as it is
            return True
        return state is grpc.ChannelConnectivity.READY

    def _invoke(
        self,
        fn: Callable[..., Any],
        request: Any,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        """One RPC with retries; statuses raised as ``synesthesia.errors``."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            remaining = max(0.001, deadline - time.monotonic())
            try:
                return fn(request, **self._call_kwargs(remaining))
            except grpc.RpcError as err:
                delay = self._retry_delay(err, attempt, idempotent, deadline)
                if delay is None:
                    raise self._final_error(err, self._connected(), budget) from err
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncClient(_ClientBase):
    """An asyncio channel, closed by ``await close()`` or at the end of an ``async with``."""

    def __init__(self, target: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(target, *args, **kwargs)
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=self._options)
        else:
            options = [*self._options, *self.tls.channel_options()]
            self._channel = grpc.aio.secure_channel(target, self.tls.credentials(), options=options)
        self._slots: asyncio.Semaphore | None = None

    @property
    def _limit(self) -> asyncio.Semaphore:
        """At most ``max_concurrency`` chunks in flight (made on the running loop)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    async def _invoke(
        self,
        fn: Callable[..., Any],
        request: Any,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            remaining = max(0.001, deadline - time.monotonic())
            try:
                return await fn(request, **self._call_kwargs(remaining))
            except grpc.RpcError as err:
                delay = self._retry_delay(err, attempt, idempotent, deadline)
                if delay is None:
                    state = self._channel.get_state(try_to_connect=False)
                    connected = state is grpc.ChannelConnectivity.READY
                    raise self._final_error(err, connected, budget) from err
            await asyncio.sleep(delay)
            attempt += 1

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
