"""The encoders as Ray Serve deployments behind Ray's gRPC proxy, checked with the SAME client
as the standalone services: vectors equal the standalone servers' (same protos, same core),
health through grpc.health.v1, INVALID_ARGUMENT naming the item, bidirectional streaming."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from synesthesia.client import EncoderClient
from synesthesia.health import health_status
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

from tests import media_factory as mf
from tests.servers import running, unused_port

pytestmark = [pytest.mark.ray, pytest.mark.integration]

ray = pytest.importorskip("ray")

ITEMS: dict[Modality, list[str | bytes]] = {
    Modality.TEXT: ["a dog barking at the mailman", "rain on a tin roof", "Ein Hund bellt."],
    Modality.IMAGE: [mf.png((64, 48), seed=1), mf.png((40, 30), "RGBA", seed=2)],
    Modality.AUDIO: [mf.wav(1.0, freq_hz=440.0), mf.wav(6.5, sr=22_050, channels=2)],
}


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    """A local Ray (2 CPUs, 200 MB object store) serving the three encoder applications."""
    from synesthesia.services.encoder.config import EncoderConfig
    from synesthesia.services.ray.args import AppArgs, Scaling
    from synesthesia.services.ray.runtime import deploy, init_ray, shutdown, start_serve

    t0 = time.perf_counter()
    init_ray(num_cpus=2, object_store_bytes=200 * 1024 * 1024)
    port = unused_port()
    try:
        start_serve(grpc_port=port, http_port=unused_port())
        scaling = Scaling(num_cpus=0.5, min_replicas=1, max_replicas=1)
        options = EncoderConfig(max_wait_ms=20)
        took = deploy(
            [AppArgs(service=m.value, encoder=options, scaling=scaling) for m in Modality]
        )
        print(f"\nRay up and encoders RUNNING in {time.perf_counter() - t0:.1f} s: {took}")
        yield f"127.0.0.1:{port}"
    finally:
        shutdown()


@pytest.fixture(scope="module")
def standalone() -> Iterator[dict[Modality, str]]:
    """The standalone gRPC services (in-process, loopback) for the same checks."""
    targets: dict[Modality, str] = {}
    contexts = []
    try:
        for m in Modality:
            settings = EncoderSettings(modality=m, port=0, max_wait_ms=20)
            ctx = running(lambda s=settings: start_encoder(s, load_embedder(s, s.modality)))
            server, _ = ctx.__enter__()
            contexts.append(ctx)
            targets[m] = f"127.0.0.1:{server.port}"
        yield targets
    finally:
        for ctx in reversed(contexts):
            ctx.__exit__(None, None, None)


@pytest.mark.parametrize("modality", list(Modality), ids=lambda m: m.value)
def test_same_client_same_vectors(
    proxy: str, standalone: dict[Modality, str], modality: Modality
) -> None:
    items = ITEMS[modality]
    ids = [f"i{i}" for i in range(len(items))]
    with (
        EncoderClient(proxy, application=modality.value, timeout=120) as on_ray,
        EncoderClient(standalone[modality], timeout=120) as alone,
    ):
        ray_replies = on_ray.embed_response(modality, items, ids=ids)
        alone_replies = alone.embed_response(modality, items)
        got, want = on_ray.embed(modality, items), alone.embed(modality, items)
        info = on_ray.info()
    assert ray_replies[0].model_id == alone_replies[0].model_id
    assert info.modality == modality_to_proto(modality) and info.dim == got.shape[1] == 384
    assert [e.id for e in ray_replies[0].embeddings] == ids
    assert [e.windows for e in ray_replies[0].embeddings] == [
        e.windows for e in alone_replies[0].embeddings
    ]
    diff = float(np.abs(got - want).max())
    print(f"{modality.value}: max |ray - standalone| = {diff:.2e}")
    assert diff <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_concurrent_requests_are_batched_and_correct(
    proxy: str, standalone: dict[Modality, str]
) -> None:
    texts = [f"sentence number {i} about dogs and rain" for i in range(16)]
    with EncoderClient(standalone[Modality.TEXT]) as alone:
        want = alone.embed("text", texts)
    with (
        EncoderClient(proxy, application="text", timeout=120) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        rows = list(pool.map(lambda t: client.embed("text", [t])[0], texts))
    assert np.abs(np.stack(rows) - want).max() <= 1e-5


def test_health_check_through_the_proxy(proxy: str) -> None:
    for m in Modality:
        assert health_status(proxy, application=m.value, timeout=30) == "SERVING"
    # several apps: the application must be named
    assert health_status(proxy, timeout=30) == "NOT_FOUND"


def test_bad_input_is_invalid_argument_naming_the_item(proxy: str) -> None:
    with grpc.insecure_channel(proxy) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        image = (("application", "image"),)
        bad = encoder_pb2.EmbedRequest(
            modality=modality_to_proto(Modality.IMAGE),
            items=[
                encoder_pb2.Item(data=mf.png(), id="ok.png"),
                encoder_pb2.Item(data=mf.random_bytes(), id="junk.png"),
            ],
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.Embed(bad, metadata=image, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "item 1 (id 'junk.png')" in (err.value.details() or "")
        wrong = encoder_pb2.EmbedRequest(
            modality=modality_to_proto(Modality.AUDIO), items=[encoder_pb2.Item(data=mf.wav())]
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.Embed(wrong, metadata=image, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "audio service" in (err.value.details() or "")


def test_embed_stream_answers_each_chunk_in_order(
    proxy: str, standalone: dict[Modality, str]
) -> None:
    chunks = [["first chunk", "still first"], ["second"], ["third", "and", "more"]]
    requests = [
        encoder_pb2.EmbedStreamRequest(
            modality=modality_to_proto(Modality.TEXT),
            items=[encoder_pb2.Item(text=t, id=t) for t in chunk],
        )
        for chunk in chunks
    ]
    with grpc.insecure_channel(proxy) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        replies = list(
            stub.EmbedStream(iter(requests), metadata=(("application", "text"),), timeout=120)
        )
    assert [[e.id for e in r.embeddings] for r in replies] == chunks
    got = np.asarray([e.values for r in replies for e in r.embeddings], dtype=np.float32)
    with EncoderClient(standalone[Modality.TEXT]) as alone:
        want = alone.embed("text", [t for c in chunks for t in c])
    assert np.abs(got - want).max() <= 1e-5
