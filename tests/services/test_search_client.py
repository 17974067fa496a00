"""The Python clients against real servers on loopback (the tiny ``imagebind-test`` model, 32-d):
SearchClient's whole API with typed results, AsyncSearchClient, statuses raised as the project's
exceptions (for EncoderClient too), and ``synesthesia index`` / ``search`` / ``embed`` on top."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from synesthesia.apps.cli import main as cli_main
from synesthesia.apps.indexing import content_id, index_folder
from synesthesia.client import (
    AsyncSearchClient,
    Collection,
    EncoderClient,
    Hit,
    Item,
    SearchClient,
)
from synesthesia.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    Unavailable,
)
from synesthesia.modality import Modality

from tests import media_factory as mf
from tests.e2e.tux import search_stack
from tests.servers import running, unused_port

DIM = 32  # imagebind-test


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with search_stack(tmp_path_factory.mktemp("index"), model="imagebind-test") as t:
        yield t


@pytest.fixture
def client(target: str) -> Iterator[SearchClient]:
    with SearchClient(target) as c:
        yield c


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_collections(client: SearchClient) -> None:
    made = client.create_collection("c1", dim=DIM, metric="l2", index="hnsw")
    assert made == Collection("c1", DIM, "l2", "hnsw", made.index_params, "")
    with pytest.raises(AlreadyExists) as exists:
        client.create_collection("c1", dim=DIM)
    assert exists.value.code == "ALREADY_EXISTS" and "c1" in exists.value.message
    assert "c1" in [c.name for c in client.list_collections()]
    info = client.describe_collection("c1")
    assert (info.config.name, info.config.dim, info.count) == ("c1", DIM, 0)
    # dim 0: the service asks the encoders for dim and model id
    ensured = client.ensure_collection("c2")
    assert (ensured.config.dim, ensured.config.model_id) == (DIM, "imagebind-test")
    assert client.ensure_collection("c2") == ensured  # already there: unchanged
    client.drop_collection("c1")
    with pytest.raises(NotFound) as missing:
        client.describe_collection("c1")
    assert missing.value.code == "NOT_FOUND"
    with pytest.raises(InvalidInput, match="metric"):
        client.create_collection("c3", metric="cosine")


def test_vectors_upsert_get_query_delete(client: SearchClient) -> None:
    client.create_collection("vec", dim=DIM)
    items = [
        Item(f"v{i}", vector=unit(i), modality="image", metadata={"n": i, "odd": i % 2 == 1})
        for i in range(5)
    ]
    assert client.upsert("vec", items, batch_size=2) == [f"v{i}" for i in range(5)]
    got = client.get("vec", ["v3", "missing", "v1"])
    assert sorted(g.id for g in got) == ["v1", "v3"]
    v3 = next(g for g in got if g.id == "v3")
    assert v3.modality is Modality.IMAGE and v3.metadata == {"n": 3, "odd": True}
    np.testing.assert_allclose(v3.vector, unit(3), atol=1e-6)

    hits = client.query("vec", vector=unit(2), k=3)
    assert isinstance(hits[0], Hit) and hits[0].id == "v2" and len(hits) == 3
    assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].modality is Modality.IMAGE
    assert hits[0].metadata == {"n": 2, "odd": False}
    odd = client.query("vec", id="v2", k=5, filter={"metadata": {"odd": True}})
    assert {h.id for h in odd} == {"v1", "v3"}
    assert client.query("vec", vector=unit(2), modalities=["audio"]) == []
    with pytest.raises(InvalidInput, match="exactly one"):
        client.query("vec", vector=unit(2), id="v2")

    assert client.delete("vec", ids=["v0"]) == ["v0"]
    assert sorted(client.delete("vec", filter={"metadata": {"n": {"gte": 3}}})) == ["v3", "v4"]
    assert client.describe_collection("vec").count == 2
    assert "vec" in client.snapshot("vec")


def test_media_items_and_queries(client: SearchClient) -> None:
    client.ensure_collection("media")
    png, wav = mf.png(seed=3), mf.wav(1.0)
    items = [
        Item("words", text="a barking dog", metadata={"kind": "text"}),
        Item("picture", data=png, modality=Modality.IMAGE),
        Item("sound", data=wav, modality="audio"),
    ]
    assert client.upsert("media", items) == ["words", "picture", "sound"]
    assert client.query("media", image=png, k=1)[0].id == "picture"
    assert client.query("media", audio=wav, k=1)[0].id == "sound"
    by_text = client.query("media", text="a barking dog", k=3)
    assert by_text[0].id == "words" and by_text[0].modality is Modality.TEXT
    with pytest.raises(InvalidInput) as bad:
        client.upsert("media", [Item("bad", data=b"not a sound", modality="audio")])
    assert bad.value.code == "INVALID_ARGUMENT" and "bad" in bad.value.message
    with pytest.raises(InvalidInput, match="modality"):
        client.upsert("media", [Item("x", data=png)])


def test_upsert_stream_commits_every_chunk(client: SearchClient) -> None:
    client.create_collection("bulk", dim=DIM)
    items = (Item(f"b{i}", vector=unit(i), modality="text") for i in range(25))
    acks = list(client.upsert_stream("bulk", items, batch_size=10))
    assert [len(a) for a in acks] == [10, 10, 5]
    assert client.describe_collection("bulk").count == 25


def test_calibrated_search_effort_and_a_querys_recall_target(client: SearchClient) -> None:
    made = client.create_collection("cal", dim=DIM, index="hnsw")  # no params: the defaults
    assert made.index_params["ef_search"] == 0 and made.index_params["recall_target"] == 950
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1500, DIM)).astype(np.float32)
    client.upsert("cal", [Item(str(i), vector=v, modality="image") for i, v in enumerate(x)])
    deadline = time.monotonic() + 60
    while (info := client.describe_collection("cal")).calibrated_count == 0:
        assert time.monotonic() < deadline, "the service never calibrated the collection"
        time.sleep(0.1)
    assert info.search_effort > 0 and 0 < info.measured_recall <= 1
    assert client.query("cal", vector=x[7], k=1, recall_target=0.99)[0].id == "7"
    with pytest.raises(InvalidInput, match="recall_target"):
        client.query("cal", vector=x[7], recall_target=1.5)


def test_async_search_client(target: str) -> None:
    async def go() -> tuple[list[Hit], list[list[str]]]:
        async with AsyncSearchClient(target) as c:
            await c.create_collection("async", dim=DIM)
            await c.upsert("async", [Item("a", vector=unit(1), modality="image")])
            acks = [
                ids
                async for ids in c.upsert_stream(
                    "async", [Item("b", vector=unit(2), modality="image")]
                )
            ]
            assert len(await c.get("async", ["a", "b"])) == 2
            with pytest.raises(NotFound):
                await c.describe_collection("nope")
            return await c.query("async", vector=unit(1), k=1), acks

    hits, acks = asyncio.run(go())
    assert [h.id for h in hits] == ["a"] and acks == [["b"]]


def test_a_service_that_is_down_is_unavailable() -> None:
    down = f"127.0.0.1:{unused_port()}"
    with SearchClient(down, timeout=5) as c, pytest.raises(Unavailable) as err:
        c.list_collections()
    assert err.value.code == "UNAVAILABLE" and err.value.message
    with EncoderClient(down, timeout=5) as e, pytest.raises(Unavailable):
        e.embed("text", ["a dog"])


def test_encoder_client_empty_batch_has_the_models_dim() -> None:
    from synesthesia.services.encoder.app import start_encoder
    from synesthesia.services.encoder.settings import EncoderSettings

    settings = EncoderSettings(modality=Modality.TEXT, port=0, model="imagebind-test")
    with running(lambda: start_encoder(settings)) as (server, _):
        e = EncoderClient(f"127.0.0.1:{server.port}")
        assert e.embed("text", []).shape == (0, DIM)
        with pytest.raises(InvalidInput) as wrong:
            e.embed("image", [mf.png()])  # the text service refuses images
        assert wrong.value.code == "INVALID_ARGUMENT"
        e.close()


def test_embed_cli_prints_one_line_when_the_service_is_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{unused_port()}"
    assert cli_main(["embed", "-m", "text", "a dog", "--address", address]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: UNAVAILABLE: "), err


def gallery(root: Path) -> Path:
    (root / "animals").mkdir(parents=True)
    (root / "animals" / "dog.png").write_bytes(mf.png(seed=1))
    (root / "animals" / "dog.wav").write_bytes(mf.wav(1.0))
    (root / "animals" / "dog.txt").write_text("A dog.\nsecond line\n")  # their caption
    (root / "notes.txt").write_text("a standalone note")  # a text item
    (root / "broken.png").write_bytes(b"not a picture")  # refused by the encoder
    (root / "readme.md").write_text("not indexed")
    return root


def test_index_treats_a_sibling_txt_as_the_caption(
    client: SearchClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = gallery(tmp_path / "g")
    address = client.target
    assert cli_main(["index", str(root), "-c", "folder", "--address", address]) == 0
    out = capsys.readouterr()
    assert "added 3, already indexed 0, refused 1" in out.out
    assert "skipped broken.png: " in out.out + out.err
    png_id = content_id((root / "animals" / "dog.png").read_bytes())
    wav_id = content_id((root / "animals" / "dog.wav").read_bytes())
    note_id = content_id((root / "notes.txt").read_bytes())
    caption_id = content_id((root / "animals" / "dog.txt").read_bytes())
    got = {g.id: g.metadata for g in client.get("folder", [png_id, wav_id, note_id, caption_id])}
    assert set(got) == {png_id, wav_id, note_id}  # the caption file is no item of its own
    assert got[png_id] == {
        "path": "animals/dog.png",
        "name": "dog",
        "kind": "picture",
        "caption": "A dog.",
    }
    assert got[wav_id]["caption"] == "A dog." and got[wav_id]["kind"] == "sound"
    assert got[note_id]["kind"] == "text" and got[note_id]["caption"] == "a standalone note"

    # resumes: nothing new; asked for, the caption files become text items too
    again = index_folder(client, root, "folder", progress=False)
    assert (again.added, again.already, len(again.rejected)) == (0, 3, 1)
    more = index_folder(client, root, "folder", caption_items=True, progress=False)
    assert (more.added, more.already) == (1, 3)
    caption = client.get("folder", [caption_id])[0]
    assert caption.modality is Modality.TEXT and caption.metadata["kind"] == "caption"
    capsys.readouterr()

    assert cli_main(["search", "-c", "folder", "--text", "A dog.", "--address", address]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["#", "score", "kind", "item"] and len(table) == 5


def test_search_cli_errors_are_one_line(
    client: SearchClient, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "-c", "no-such", "--text", "dog", "--address", client.target]
    assert cli_main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: NOT_FOUND: ") and "\n" not in err


def test_index_retries_a_slow_batch_item_by_item(
    client: SearchClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder that cannot finish a batch in time (a busy machine) costs a retry, not the run."""
    root = gallery(tmp_path / "g")
    upsert = client.upsert
    sizes: list[int] = []

    def slow_batches(collection: str, items: list[Item], **kw: Any) -> list[str]:
        sizes.append(len(items))
        if len(items) > 1:
            raise DeadlineExceeded("audio encoder at … did not answer in time")
        return upsert(collection, items, **kw)

    monkeypatch.setattr(client, "upsert", slow_batches)
    done = index_folder(client, root, "slow", progress=False)
    assert (done.added, len(done.rejected)) == (3, 1) and sizes[0] == 4 and max(sizes[1:]) == 1


def test_index_skips_every_bad_file_by_path_and_links_out_of_the_folder(
    client: SearchClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "g"
    (root / "a").mkdir(parents=True)
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "a" / "fake.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    (root / "a" / "noise.ogg").write_bytes(bytes(range(256)) * 4)
    (root / "a" / "junk.mp3").write_bytes(b"\xff\xfb" + b"\x00" * 100)
    (root / "a" / "dog.png").write_bytes(mf.png(seed=5))
    (root / "z.wav").write_bytes(mf.wav(0.5))
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.png").write_bytes(mf.png(seed=9))
    (outside / "secret.txt").write_text("do not index me")
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    done = index_folder(client, root, "messy", progress=False)
    assert done.added == 3, done  # dog.png, z.wav, latin1.txt
    named = sorted(line.split(":", 1)[0] for line in done.rejected)
    assert named[:4] == ["a/empty.png", "a/fake.wav", "a/junk.mp3", "a/noise.ogg"], named
    assert set(named[4:]) <= {"link.png", "linked/secret.png", "linked/secret.txt"}
    assert "link.png" in named
    for line in done.rejected:
        assert "(id '" not in line and content_id(b"") not in line, line
    stored = {h.metadata.get("path") for h in client.query("messy", text="anything", k=20)}
    assert stored == {"a/dog.png", "z.wav", "latin1.txt"}
    assert "secret" not in str(client.query("messy", text="do not index me", k=20))
    capsys.readouterr()


def test_inputs_as_paths_pil_images_and_arrays(client: SearchClient, tmp_path: Path) -> None:
    from PIL import Image

    client.ensure_collection("inputs")
    png = mf.png(seed=7)
    (tmp_path / "p.png").write_bytes(png)
    picture = Image.open(tmp_path / "p.png")
    pixels = np.asarray(picture.convert("RGB"))
    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    items = [
        Item("path", data=tmp_path / "p.png", modality="image"),
        Item("str-path", data=str(tmp_path / "p.png"), modality="image"),
        Item("pil", data=picture, modality="image"),
        Item("array", data=pixels, modality="image"),
        Item("tone", data=tone, modality="audio", sample_rate=sr),
    ]
    assert client.upsert("inputs", items, batch_size=2, show_progress=True) == [i.id for i in items]
    same = client.get("inputs", ["path", "str-path", "pil", "array"])
    vectors = {g.id: g.vector for g in same}
    np.testing.assert_allclose(vectors["path"], vectors["str-path"], atol=1e-6)
    np.testing.assert_allclose(vectors["pil"], vectors["array"], atol=1e-5)
    assert client.query("inputs", audio=tone, sample_rate=sr, k=1)[0].id == "tone"
    assert client.query("inputs", image=tmp_path / "p.png", k=1)[0].score > 0.99
    with pytest.raises(InvalidInput, match="sample_rate"):
        client.query("inputs", audio=tone)


def test_upsert_errors_name_the_callers_item(client: SearchClient) -> None:
    client.ensure_collection("numbered")
    items = [Item(f"t{i}", text=f"words {i}") for i in range(7)]
    items[5] = Item("broken", data=b"not a picture", modality="image")
    with pytest.raises(InvalidInput) as err:
        client.upsert("numbered", items, batch_size=2)
    assert err.value.index == 5 and err.value.message.startswith("item 5 (id 'broken'): ")


def test_query_batch_answers_as_query_does(client: SearchClient, target: str) -> None:
    client.ensure_collection("batch")
    png, wav = mf.png(seed=4), mf.wav(0.5)
    items = [
        Item(f"v{i}", vector=unit(i), modality="image", metadata={"n": i}) for i in range(12)
    ] + [
        Item("words", text="a barking dog"),
        Item("picture", data=png, modality="image"),
        Item("sound", data=wav, modality="audio"),
    ]
    client.upsert("batch", items)
    queries: list[dict[str, Any]] = [
        {"vector": unit(3)},
        {"text": "a barking dog", "k": 2},
        {"image": png},
        {"audio": wav, "k": 3},
        {"id": "v5", "filter": {"metadata": {"n": {"lt": 6}}}},
        {"vector": unit(7), "modalities": ["image"]},
        {"vector": unit(8)},
    ]
    want = [client.query("batch", **{"k": 4, **q}) for q in queries]

    def same(got: list[list[Hit]]) -> None:
        assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in want]
        for hits, expected in zip(got, want, strict=True):
            assert [h.score for h in hits] == pytest.approx([h.score for h in expected])
            assert [h.metadata for h in hits] == [h.metadata for h in expected]

    same(client.query_batch("batch", queries, k=4, batch_size=3))  # three calls

    async def go() -> list[list[Hit]]:
        async with AsyncSearchClient(target) as c:
            return await c.query_batch("batch", queries, k=4, batch_size=2)

    same(asyncio.run(go()))
    bad = [*queries[:5], {"vector": [1.0, 2.0]}, queries[6]]
    with pytest.raises(InvalidInput) as err:
        client.query_batch("batch", bad, batch_size=2)
    assert err.value.index == 5
    assert err.value.message == f"query 5: vector has dimension 2, expected {DIM}"
    with pytest.raises(InvalidInput) as local:
        client.query_batch("batch", [{"vector": unit(1)}, {"vectors": unit(2)}])
    assert local.value.index == 1 and "unknown keys ['vectors']" in local.value.message


def test_classify(target: str) -> None:
    with SearchClient(target) as c:
        ranked = c.classify(["dog", "car", "tree"], text="dog", template="a photo of a {}")
    assert sorted(x.label for x in ranked) == ["car", "dog", "tree"]
    assert ranked == sorted(ranked, key=lambda x: -x.score)
    assert sum(x.probability for x in ranked) == pytest.approx(1.0, abs=1e-3)

    async def go() -> Any:
        async with AsyncSearchClient(target) as ac:
            return await ac.classify(["cow", "duck"], image=mf.png(seed=2))

    assert len(asyncio.run(go())) == 2
    with SearchClient(target) as c, pytest.raises(InvalidInput, match="exactly one"):
        c.classify(["a", "b"])
