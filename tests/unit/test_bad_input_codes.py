"""Bad input is INVALID_ARGUMENT, never INTERNAL or UNKNOWN (issue 15): non-finite numbers in
metadata and filters, request bytes that do not parse (invalid UTF-8), odd collection names."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from synesthesia.errors import InvalidInput
from synesthesia.index import IndexManager
from synesthesia.index.types import validate_name
from synesthesia.protoconv import dict_to_struct
from synesthesia.services.search.flow import SearchFlow
from synesthesia.services.search.store import LocalStore
from synesthesia.serving.interceptors import ServerInterceptor
from synesthesia.v1 import common_pb2, search_pb2

NON_FINITE = [float("nan"), float("inf"), float("-inf")]


class _NoEncoders:
    async def embed(self, *args: Any) -> Any:
        raise AssertionError("no encoder call expected")

    async def info(self) -> Any:
        raise AssertionError("no encoder call expected")


@pytest.fixture
def flow(tmp_path: Path):  # type: ignore[no-untyped-def]
    manager = IndexManager(tmp_path)
    store = LocalStore(manager)
    f = SearchFlow(store, _NoEncoders(), 100)
    asyncio.run(
        f.create(
            search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="c", dim=2))
        )
    )
    yield f
    store.close()
    manager.close(snapshot=False)


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_metadata_names_the_item(flow, bad: float) -> None:  # type: ignore[no-untyped-def]
    item = search_pb2.UpsertItem(
        id="x",
        vector=search_pb2.Vector(values=[1.0, 0.0]),
        modality=common_pb2.MODALITY_IMAGE,
        metadata=dict_to_struct({"year": bad}),
    )
    with pytest.raises(InvalidInput, match=r"item 0 \(id 'x'\): metadata 'year' is .*finite"):
        asyncio.run(flow.upsert("c", [item], None))


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_filter_is_invalid_argument(flow, bad: float) -> None:  # type: ignore[no-untyped-def]
    for flt in ({"metadata": {"year": {"gt": bad}}}, {"metadata": {"year": bad}}):
        request = search_pb2.QueryRequest(collection="c", k=1, filter=dict_to_struct(flt))
        with pytest.raises(InvalidInput, match="finite"):
            flow.query_filter(request)
        with pytest.raises(InvalidInput, match="finite"):
            asyncio.run(
                flow.delete(search_pb2.DeleteRequest(collection="c", filter=dict_to_struct(flt)))
            )


@pytest.mark.parametrize("name", ["c\n", "c ", " c", "c\t", "c\x00", "c\r\n", "\nc", "ç"])
def test_collection_names_with_stray_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid collection name"):
        validate_name(name)


@pytest.mark.parametrize("name", ["c", "a-b_c.d", "X9", "a" * 64])
def test_valid_collection_names_still_pass(name: str) -> None:
    assert validate_name(name) == name


def test_trailing_newline_is_not_another_collection(flow) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        asyncio.run(
            flow.create(
                search_pb2.CreateCollectionRequest(
                    config=search_pb2.CollectionConfig(name="c\n", dim=2)
                )
            )
        )
    with pytest.raises(InvalidInput):
        asyncio.run(flow.describe("c\n"))


# --- the interceptor: request bytes that do not parse ------------------------------------------

BAD_UTF8 = b"\x0a\x02\xff\xfe"  # field 1 (string collection) = 0xFF 0xFE


async def _echo(request: search_pb2.GetRequest, context: aio.ServicerContext) -> bytes:
    return request.collection.encode()


async def _count(requests, context: aio.ServicerContext) -> bytes:  # type: ignore[no-untyped-def]
    n = 0
    async for _ in requests:
        n += 1
    return str(n).encode()


async def _each(requests, context: aio.ServicerContext):  # type: ignore[no-untyped-def]
    async for request in requests:
        yield request.collection.encode()


async def _run_calls() -> dict[str, Any]:
    server = aio.server(interceptors=[ServerInterceptor()])
    parse = search_pb2.GetRequest.FromString
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=parse),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_count, request_deserializer=parse),
        "BothStream": grpc.stream_stream_rpc_method_handler(_each, request_deserializer=parse),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            good = search_pb2.GetRequest(collection="ok").SerializeToString()
            out["good"] = await channel.unary_unary("/t.S/Unary")(good)
            for name, call in (
                ("unary", lambda: channel.unary_unary("/t.S/Unary")(BAD_UTF8)),
                (
                    "client",
                    lambda: channel.stream_unary("/t.S/ClientStream")(iter([good, BAD_UTF8])),
                ),
            ):
                try:
                    await call()
                except aio.AioRpcError as err:
                    out[name] = (err.code(), err.details())
            try:
                async for _ in channel.stream_stream("/t.S/BothStream")(iter([good, BAD_UTF8])):
                    pass
            except aio.AioRpcError as err:
                out["both"] = (err.code(), err.details())
    finally:
        await server.stop(None)
    return out


def test_undecodable_requests_are_invalid_argument() -> None:
    out = asyncio.run(_run_calls())
    assert out["good"] == b"ok"
    for name in ("unary", "client", "both"):
        code, details = out[name]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert "UTF-8" in details


def test_a_stored_legacy_name_stays_reachable_to_drop(tmp_path: Path) -> None:
    """A collection created before names were fully matched ('c\\n') loads, can be dropped, and
    does not make 'c\\n' a valid new name."""
    from synesthesia.index.types import CollectionSpec

    manager = IndexManager(tmp_path)
    manager._store.create_collection(CollectionSpec("legacy\n", 2))  # as an old release did
    manager.close(snapshot=False)
    manager = IndexManager(tmp_path)
    try:
        assert [s.name for s in manager.list_collections()] == ["legacy\n"]
        assert manager.collection("legacy\n").spec.dim == 2
        manager.drop_collection("legacy\n")
        with pytest.raises(InvalidInput):
            manager.collection("legacy\n")
        with pytest.raises(InvalidInput):
            manager.create_collection("legacy\n", 2)
    finally:
        manager.close(snapshot=False)
