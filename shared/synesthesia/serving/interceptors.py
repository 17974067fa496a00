"""One server interceptor for every service: request id, metrics, and the mapping of domain
errors to gRPC status codes (bad input -> INVALID_ARGUMENT naming the item; anything unexpected
-> INTERNAL with a generic message and the traceback in the log). A request that does not parse
as its message type (e.g. invalid UTF-8 in a string field, which grpc reported as UNKNOWN) is
INVALID_ARGUMENT too: the deserializer is wrapped so that the failure reaches the handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from synesthesia.errors import InvalidInput, SynesthesiaError
from synesthesia.serving.context import REQUEST_ID_HEADER, new_request_id, request_id
from synesthesia.serving.handlers import PerMethod, around_calls
from synesthesia.serving.metrics import LATENCY, REQUESTS

log = logging.getLogger(__name__)

_UNOBSERVED = ("/grpc.health.v1.Health/Watch", "/grpc.reflection")


def _status_of(exc: BaseException, context: aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(exc, aio.AbortError):
        code = context.code()
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


def _code_for(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, SynesthesiaError):
        return getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


async def _abort_for(exc: Exception, context: aio.ServicerContext, method: str) -> None:
    if isinstance(exc, SynesthesiaError):
        code = _code_for(exc)
        log.info("%s -> %s: %s", method, code.name, exc)
        await context.abort(code, str(exc))
    log.exception("unexpected error in %s", method)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error (request id {request_id.get()}); see server log"
    )


class _Undecodable:
    """What the wrapped deserializer returns for bytes that do not parse: the handler raises."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError: bad wire data or invalid UTF-8
            return _Undecodable(str(exc) or type(exc).__name__)

    return deserialize


def _parsed(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidInput(
            f"the request does not parse as its message type ({request.problem}); "
            "string fields must be valid UTF-8"
        )
    return request


async def _parsed_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _parsed(request)


class ServerInterceptor(aio.ServerInterceptor):
    def __init__(self) -> None:
        self._observed = PerMethod(self._observe)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_UNOBSERVED):
            return handler
        return self._observed(details.method, handler)

    @staticmethod
    def _observe(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        latency = LATENCY.labels(method)

        @contextlib.asynccontextmanager
        async def observed(context: aio.ServicerContext) -> AsyncIterator[None]:
            """Request id + metrics around one RPC; domain errors become statuses."""
            metadata = dict(context.invocation_metadata() or ())
            rid = metadata.get(REQUEST_ID_HEADER) or new_request_id()
            request_id.set(str(rid)[:64])
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id.get()),))
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                yield
            except aio.AbortError as exc:
                code = _status_of(exc, context)
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code = _code_for(exc)
                await _abort_for(exc, context, method)
            finally:
                REQUESTS.labels(method, code.name).inc()
                latency.observe(time.perf_counter() - start)

        return around_calls(
            handler,
            observed,
            request_deserializer=_tolerant(handler.request_deserializer),
            incoming=lambda request, streaming: (
                _parsed_stream(request) if streaming else _parsed(request)
            ),
        )
