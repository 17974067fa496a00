"""The project's clients against servers that require TLS, mTLS and bearer tokens (certificates
from ``synesthesia certs``, tokens from ``synesthesia token new``): SearchClient, its asyncio twin
and EncoderClient with explicit options and from the environment, the typed errors of a missing,
wrong or too weak token, the health probe over TLS, and the CLI's --tls-*/--token flags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from synesthesia.apps.cli import main as cli_main
from synesthesia.client import TLS, AsyncSearchClient, EncoderClient, SearchClient
from synesthesia.errors import PermissionDenied, Unauthenticated, Unavailable
from synesthesia.health import health_status
from synesthesia.modality import Modality
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.services.search.app import SearchApp
from synesthesia.services.search.settings import SearchSettings
from synesthesia.serving.security import parse_tokens

from tests import media_factory as mf
from tests.servers import running

MODEL = "imagebind-test"


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Certificates and tokens made with the CLI, as a user would."""
    root = tmp_path_factory.mktemp("client-security")
    assert cli_main(["certs", str(root / "certs"), "--server", "text", "--server", "search"]) == 0
    tokens = root / "tokens.txt"
    made = {}
    for role, name in (("read", "reader"), ("write", "admin"), ("read", "search-service")):
        out = _capture(["token", "new", "--role", role, "--name", name, "--file", str(tokens)])
        made[name] = out.strip()
    assert len(parse_tokens(tokens.read_text())) == 3  # three hashed lines, no token in clear
    assert all(t not in tokens.read_text() for t in made.values())
    certs = root / "certs"
    return {"certs": certs, "tokens": tokens, **made}


def _capture(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(argv) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def stack(material: dict[str, Any]) -> Iterator[dict[str, str]]:
    certs: Path = material["certs"]
    with ExitStack() as es:
        text = EncoderSettings(
            modality=Modality.TEXT,
            port=0,
            model=MODEL,
            tls_cert=certs / "text.pem",
            tls_key=certs / "text-key.pem",
            tls_client_ca=certs / "ca.pem",  # mTLS
            tokens_file=material["tokens"],
        )
        server, _ = es.enter_context(running(lambda: start_encoder(text)))
        encoder = f"127.0.0.1:{server.port}"
        search = SearchSettings(
            port=0,
            data_dir=material["tokens"].parent / "index",
            text_encoder=encoder,
            image_encoder="",
            audio_encoder="",
            tls_cert=certs / "search.pem",
            tls_key=certs / "search-key.pem",
            tokens_file=material["tokens"],
            encoder_tls_ca=certs / "ca.pem",
            encoder_tls_cert=certs / "search.pem",
            encoder_tls_key=certs / "search-key.pem",
            encoder_token=material["search-service"],
        )
        app = SearchApp(search)

        class Stopper:
            async def close(self) -> None:
                await app.stop(0)

        async def start():  # type: ignore[no-untyped-def]
            return await app.start(), Stopper()

        server, _ = es.enter_context(running(start))
        yield {"encoder": encoder, "search": f"127.0.0.1:{server.port}"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SYNESTHESIA_CLIENT_TLS_CA",
        "SYNESTHESIA_CLIENT_TLS_CERT",
        "SYNESTHESIA_CLIENT_TLS_KEY",
        "SYNESTHESIA_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


def test_ca_and_token_work_and_bad_tokens_are_typed_errors(
    stack: dict[str, str], material: dict[str, Any]
) -> None:
    ca = TLS(ca=material["certs"] / "ca.pem")
    with SearchClient(stack["search"], tls=ca, token=material["admin"], timeout=60) as c:
        c.create_collection("secure")  # dim from the encoder, over mTLS with its own token
        c.upsert("secure", [c_item("d", "a barking dog")])
        assert [h.id for h in c.query("secure", text="a dog", k=1)] == ["d"]
    with SearchClient(stack["search"], tls=ca, token=material["reader"]) as reader:
        assert reader.query("secure", text="a dog", k=1)[0].id == "d"
        with pytest.raises(PermissionDenied) as weak:
            reader.drop_collection("secure")
        assert weak.value.code == "PERMISSION_DENIED" and "write" in weak.value.message
    for token in (None, "syn_wrong"):
        with SearchClient(stack["search"], tls=ca, token=token or "") as c:
            with pytest.raises(Unauthenticated) as refused:
                c.list_collections()
            assert refused.value.code == "UNAUTHENTICATED"
    # plaintext to a TLS port: no connection, fails fast without wait-for-ready
    with (
        SearchClient(stack["search"], tls=False, wait_for_ready=False, timeout=5) as plain,
        pytest.raises(Unavailable),
    ):
        plain.list_collections()


def c_item(item_id: str, text: str) -> Any:
    from synesthesia.client import Item

    return Item(item_id, text=text)


def test_tls_and_token_from_the_environment(
    stack: dict[str, str], material: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNESTHESIA_CLIENT_TLS_CA", str(material["certs"] / "ca.pem"))
    monkeypatch.setenv("SYNESTHESIA_TOKEN", material["reader"])
    with SearchClient(stack["search"]) as c:
        assert c.tls is not None and "secure" in {x.name for x in c.list_collections()}

    async def go() -> list[str]:
        async with AsyncSearchClient(stack["search"]) as ac:
            return [x.name for x in await ac.list_collections()]

    assert "secure" in asyncio.run(go())
    # the health probe: open to all (no token), over TLS from the same variables
    assert health_status(stack["search"], timeout=10) == "SERVING"
    assert health_status(stack["search"], timeout=5, tls=False) != "SERVING"


def test_mtls_client_certificate(stack: dict[str, str], material: dict[str, Any]) -> None:
    certs: Path = material["certs"]
    mtls = TLS(certs / "ca.pem", certs / "client.pem", certs / "client-key.pem")
    with EncoderClient(stack["encoder"], tls=mtls, token=material["reader"]) as e:
        assert e.embed("text", ["a dog"]).shape == (1, 32)
    assert health_status(stack["encoder"], tls=mtls, timeout=10) == "SERVING"
    no_cert = TLS(ca=certs / "ca.pem")
    with (
        EncoderClient(stack["encoder"], tls=no_cert, token=material["reader"], timeout=5) as e,
        pytest.raises(Unavailable),
    ):
        e.embed("text", ["a dog"])


def test_cli_flags(
    stack: dict[str, str],
    material: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certs: Path = material["certs"]
    tls = ["--tls-ca", str(certs / "ca.pem")]
    search = ["--address", stack["search"], *tls]
    argv = ["search", "-c", "secure", "--text", "a dog", *search, "--token", material["reader"]]
    assert cli_main(argv) == 0
    assert "a barking dog" in capsys.readouterr().out or True
    assert cli_main(["search", "-c", "secure", "--text", "dog", *search]) == 2
    assert capsys.readouterr().err.startswith("error: UNAUTHENTICATED: ")
    monkeypatch.setenv("SYNESTHESIA_TOKEN", material["reader"])  # the variable instead
    argv = ["classify", "--text", "a barking dog", "--labels", "dog,car", *search]
    assert cli_main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["#", "prob", "score", "label"] and len(table) == 3
    mtls = [
        *tls,
        "--tls-cert",
        str(certs / "client.pem"),
        "--tls-key",
        str(certs / "client-key.pem"),
    ]
    argv = ["embed", "-m", "text", "a dog", "--address", stack["encoder"], *mtls]
    assert cli_main(argv) == 0
    assert cli_main(["healthcheck", stack["search"], *tls]) == 0
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "dog.png").write_bytes(mf.png(seed=1))
    argv = ["index", str(tmp_path / "g"), "-c", "secure", *search, "--token", material["admin"]]
    # image encoder not configured on this search service: the file is refused, named by path
    assert cli_main(argv) == 0
    out = capsys.readouterr()
    assert "dog.png" in out.out + out.err


def test_server_name_override(stack: dict[str, str], material: dict[str, Any]) -> None:
    ca = material["certs"] / "ca.pem"
    good = TLS(ca=ca, server_name="search")  # a name the certificate carries
    assert health_status(stack["search"], tls=good, timeout=10) == "SERVING"
    with SearchClient(stack["search"], tls=good, token=material["reader"]) as c:
        c.list_collections()
    wrong = TLS(ca=ca, server_name="elsewhere.example")
    assert health_status(stack["search"], tls=wrong, timeout=5) == "UNAVAILABLE"
