"""TLS, mTLS and bearer tokens end to end, with certificates made by serving/certs.py: a text
encoder that requires mTLS and tokens, and a search service that requires tokens and calls the
encoder with its own certificate and token."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synesthesia.modality import Modality
from synesthesia.protoconv import modality_to_proto
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.services.search.app import SearchApp
from synesthesia.services.search.settings import SearchSettings
from synesthesia.serving.certs import make_certs
from synesthesia.serving.security import (
    METHOD_ROLES,
    SecurityError,
    SecuritySettings,
    authorize,
    check_exposure,
    new_token,
    parse_tokens,
)
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc

from tests.servers import running


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("security")
    certs = make_certs(root / "certs", servers=("text", "search"))
    read, read_line = new_token("read", "reader")
    write, write_line = new_token("write", "admin")
    service, service_line = new_token("read", "search-service")
    tokens = root / "tokens.txt"
    tokens.write_text(f"# test tokens\n{read_line}\n{write_line}\n{service_line}\n")
    return {"certs": certs, "tokens": tokens, "read": read, "write": write, "service": service}


@pytest.fixture(scope="module")
def stack(material: dict) -> Iterator[dict[str, str]]:  # type: ignore[type-arg]
    certs = material["certs"]
    with ExitStack() as es:
        text = EncoderSettings(
            modality=Modality.TEXT,
            port=0,
            tls_cert=certs["text"].cert,
            tls_key=certs["text"].key,
            tls_client_ca=certs["ca"].cert,
            tokens_file=material["tokens"],
        )
        server, _ = es.enter_context(
            running(lambda: start_encoder(text, load_embedder(text, Modality.TEXT)))
        )
        encoder = f"127.0.0.1:{server.port}"
        search = SearchSettings(
            port=0,
            data_dir=Path(str(material["tokens"])).parent / "index",
            text_encoder=encoder,
            image_encoder="",
            audio_encoder="",
            tokens_file=material["tokens"],
            encoder_tls_ca=certs["ca"].cert,
            encoder_tls_cert=certs["search"].cert,
            encoder_tls_key=certs["search"].key,
            encoder_token=material["service"],
        )

        async def start():  # type: ignore[no-untyped-def]
            app = SearchApp(search)
            return await app.start(), _Closer(app)

        server, _ = es.enter_context(running(start))
        yield {"encoder": encoder, "search": f"127.0.0.1:{server.port}"}


class _Closer:
    def __init__(self, app: SearchApp) -> None:
        self.app = app

    async def close(self) -> None:
        await self.app.stop(0)


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _tls(material: dict, client: bool = True) -> grpc.ChannelCredentials:  # type: ignore[type-arg]
    certs = material["certs"]
    return grpc.ssl_channel_credentials(
        root_certificates=certs["ca"].cert.read_bytes(),
        private_key=certs["client"].key.read_bytes() if client else None,
        certificate_chain=certs["client"].cert.read_bytes() if client else None,
    )


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()  # type: ignore[attr-defined,no-any-return]


def test_tokens_and_roles_on_the_search_service(stack: dict, material: dict) -> None:  # type: ignore[type-arg]
    with grpc.insecure_channel(stack["search"]) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        create = search_pb2.CreateCollectionRequest(config=search_pb2.CollectionConfig(name="sec"))
        assert _code(lambda: stub.CreateCollection(create, timeout=30)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        wrong = _auth("syn_not-a-token")
        assert (
            _code(lambda: stub.ListCollections(search_pb2.ListCollectionsRequest(), metadata=wrong))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        read, write = _auth(material["read"]), _auth(material["write"])
        assert _code(lambda: stub.CreateCollection(create, metadata=read, timeout=30)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # dim 0: the search service asks the encoder (mTLS + its own token) for dim and model
        reply = stub.CreateCollection(create, metadata=write, timeout=60)
        assert reply.config.dim == 384
        stub.Upsert(
            search_pb2.UpsertRequest(
                collection="sec", items=[search_pb2.UpsertItem(id="d", text="a barking dog")]
            ),
            metadata=write,
            timeout=60,
        )
        hits = stub.Query(
            search_pb2.QueryRequest(collection="sec", text="a dog", k=1), metadata=read, timeout=60
        ).hits
        assert [h.id for h in hits] == ["d"]
        drop = search_pb2.DropCollectionRequest(collection="sec")
        assert _code(lambda: stub.DropCollection(drop, metadata=read)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        stub.DropCollection(drop, metadata=write)
        # health and reflection stay open
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_mtls_on_the_encoder(stack: dict, material: dict) -> None:  # type: ignore[type-arg]
    request = encoder_pb2.EmbedRequest(
        modality=modality_to_proto(Modality.TEXT),
        items=[encoder_pb2.Item(text="a barking dog")],
    )
    read = _auth(material["read"])
    with grpc.insecure_channel(stack["encoder"]) as ch:  # plaintext to a TLS port
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        assert _code(lambda: stub.Embed(request, metadata=read, timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    with grpc.secure_channel(stack["encoder"], _tls(material, client=False)) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)  # TLS but no client certificate
        assert _code(lambda: stub.Embed(request, metadata=read, timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    with grpc.secure_channel(stack["encoder"], _tls(material)) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        assert _code(lambda: stub.Embed(request, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Embed(request, metadata=read, timeout=30)
        assert reply.dim == 384 and len(reply.embeddings) == 1
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_new_token_is_accepted_after_the_file_changes(stack: dict, material: dict) -> None:  # type: ignore[type-arg]
    token, line = new_token("read", "late")
    path: Path = material["tokens"]
    with grpc.insecure_channel(stack["search"]) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        ask = search_pb2.ListCollectionsRequest()
        assert _code(lambda: stub.ListCollections(ask, metadata=_auth(token))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        path.write_text(path.read_text() + line + "\n")
        st = path.stat()
        os.utime(path, (st.st_atime, st.st_mtime + 5))  # a visibly newer file
        time.sleep(1.1)
        stub.ListCollections(ask, metadata=_auth(token), timeout=10)


def test_every_rpc_has_a_role_and_unlisted_ones_are_refused() -> None:
    for module in (encoder_pb2, search_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"/{service.full_name}/{method.name}" in METHOD_ROLES
    tokens = parse_tokens("")  # no tokens at all: still the method check comes first
    refused = authorize("/synesthesia.v1.SearchService/Future", (), tokens)  # type: ignore[arg-type]
    assert refused is not None and refused[0] == grpc.StatusCode.PERMISSION_DENIED
    assert authorize("/grpc.health.v1.Health/Check", (), tokens) is None  # type: ignore[arg-type]


def test_a_public_bind_needs_tls_tokens_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="--insecure"):
        check_exposure("0.0.0.0", SecuritySettings())
    check_exposure("127.0.0.1", SecuritySettings())
    check_exposure("::1", SecuritySettings())
    check_exposure("0.0.0.0", SecuritySettings(insecure=True))
    check_exposure("0.0.0.0", SecuritySettings(tokens_file=tmp_path / "t"))


def test_a_bad_tokens_file_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("admin sha256:abc\n")
    settings = EncoderSettings(modality=Modality.TEXT, port=0, tokens_file=bad)
    from synesthesia.serving.security import server_interceptors

    with pytest.raises(SecurityError, match="line 1"):
        server_interceptors(settings)
