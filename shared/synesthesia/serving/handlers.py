"""The one way the server interceptors wrap a method handler: every call of the handler, of
whichever of the four RPC kinds, runs inside an async context manager made per call from the
call's context (metrics and error mapping, admission, authentication). ``PerMethod`` keeps each
method's wrapped handler, so that a call costs no new handler (nor closures) of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
from grpc import aio

Scope = Callable[[aio.ServicerContext], AbstractAsyncContextManager[Any]]

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def around_calls(
    handler: grpc.RpcMethodHandler,
    scope: Scope,
    request_deserializer: Callable[[bytes], Any] | None = None,
    incoming: Callable[[Any, bool], Any] = lambda request, streaming: request,
) -> grpc.RpcMethodHandler:
    """``handler`` with every call inside ``scope(context)``. ``incoming(request, streaming)``
    maps what the handler receives (one request, or the request iterator when ``streaming``);
    ``request_deserializer`` replaces the handler's own."""
    streams_in = bool(handler.stream_unary or handler.stream_stream)
    streams_out = bool(handler.unary_stream or handler.stream_stream)
    inner = (
        handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
    )

    async def unary(request: Any, context: aio.ServicerContext) -> Any:
        async with scope(context):
            return await inner(incoming(request, streams_in), context)

    async def streaming(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        async with scope(context):
            async for response in inner(incoming(request, streams_in), context):
                yield response

    return _FACTORIES[(streams_in, streams_out)](
        streaming if streams_out else unary,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class PerMethod:
    """``wrap(method, handler)`` once per method: the wrapped handler is reused for as long as
    the handler it wraps is the same object (an inner interceptor that wraps per call makes
    it wrap again; one entry per method either way)."""

    def __init__(self, wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]):
        self._wrap = wrap
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def __call__(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
