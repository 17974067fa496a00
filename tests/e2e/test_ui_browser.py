"""The search page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): a
sound upload finds that very sound first and is shown back as a player, pictures come back as
loaded thumbnails and sounds as players that know their duration, a corrupt file is explained in
the user's words, "more like this", k and "load more" work, "which of these labels?" ranks
labels, and the keyboard alone (Tab, typing, Enter) searches. A screenshot lands in
test-output/."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synesthesia.apps.indexing import index_folder
from synesthesia.apps.ui import Searcher, UiServer
from synesthesia.client import SearchClient
from synesthesia.errors import InvalidInput

from tests.conftest import REPO
from tests.e2e.tux import LABELS, build_gallery, search_stack

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOG_SOUND = "animals/mammals/dogs/dog.ogg"
CORRUPT = b"this is not a sound at all"


@pytest.fixture(scope="module")
def gallery(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_gallery(data_dir, tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="module")
def site(gallery: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with search_stack(tmp_path_factory.mktemp("index")) as target:
        with SearchClient(target) as client:
            indexed = index_folder(client, gallery, "tux", caption_items=True, progress=False)
        assert (indexed.added, indexed.rejected) == (3 * len(LABELS), [])
        ui = UiServer(Searcher(target, "tux", gallery), port=0).start()
        try:
            yield {"url": ui.url, "search": target}
        finally:
            ui.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
        )
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, site: dict[str, str]) -> Iterator[Any]:
    page = browser.new_page()
    page.goto(site["url"])
    try:
        yield page
    finally:
        page.close()


def wait_results(page: Any, among: str) -> list[dict[str, str]]:
    """Waits for a finished search whose status names ``among``; returns the result cards."""
    page.wait_for_function(
        "([among]) => document.querySelector('#results').getAttribute('aria-busy') === 'false'"
        " && document.querySelector('#status').textContent.includes(' among ' + among)",
        arg=[among],
    )
    return page.eval_on_selector_all(
        "#results li",
        """cards => cards.map(li => ({
            path: li.dataset.path, modality: li.dataset.modality,
            score: li.querySelector('.score').textContent,
            img: li.querySelector('img') ? li.querySelector('img').getAttribute('src') : '',
            audio: li.querySelector('audio') ? li.querySelector('audio').getAttribute('src') : '',
        }))""",
    )


def test_a_sound_finds_itself_with_thumbnails_and_players(
    page: Any, site: dict[str, str], gallery: Path
) -> None:
    count = 3 * len(LABELS)
    page.wait_for_function(f"document.querySelector('#info').textContent.includes('{count} items')")

    page.select_option("#among", "sounds")
    page.set_input_files("#file", str(gallery / DOG_SOUND))
    cards = wait_results(page, "sounds")
    assert cards[0]["path"] == DOG_SOUND and cards[0]["score"] == "score 1.000", cards[0]
    assert len(cards) == len(LABELS) and all(c["modality"] == "audio" for c in cards)
    assert all(c["audio"] == f"/media/{c['path']}" for c in cards)
    reply = page.request.get(site["url"] + cards[0]["audio"].lstrip("/"))
    assert reply.status == 200 and reply.headers["content-type"] == "audio/ogg"
    assert reply.body() == (gallery / DOG_SOUND).read_bytes()

    page.select_option("#among", "images")  # the same sound, now among the pictures
    cards = wait_results(page, "images")
    assert len(cards) == len(LABELS) and all(c["modality"] == "image" and c["img"] for c in cards)
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "ui-sound-to-pictures.png"), full_page=True)
    assert (out / "ui-sound-to-pictures.png").stat().st_size > 10_000

    page.select_option("#among", "all")
    cards = wait_results(page, "everything")
    assert cards[0]["path"] == DOG_SOUND and cards[0]["score"] == "score 1.000", cards[0]
    assert page.is_hidden("#error")


def test_a_corrupt_file_shows_the_services_message(page: Any, site: dict[str, str]) -> None:
    with SearchClient(site["search"]) as client, pytest.raises(InvalidInput) as caught:
        client.query("tux", audio=CORRUPT, k=5)
    assert caught.value.code == "INVALID_ARGUMENT"
    details = caught.value.message

    page.set_input_files(
        "#file", files=[{"name": "broken.ogg", "mimeType": "audio/ogg", "buffer": CORRUPT}]
    )
    page.wait_for_selector("#error", state="visible")
    text = page.text_content("#error") or ""
    assert text.startswith("This file could not be read as a sound: "), text
    reason = details.split("): ", 1)[-1]  # the service's reason, without "item 0 (id 'query')"
    assert reason[:40] in text, (details, text)
    assert page.get_attribute("#error", "role") == "alert"
    assert page.eval_on_selector_all("#results li", "cards => cards.length") == 0
    assert "INVALID_ARGUMENT" not in text and "(id 'query')" not in text


def test_the_keyboard_alone_searches(page: Any) -> None:
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["file", "words", "among", "k", "go"]
    page.focus("#among")
    page.keyboard.press("ArrowDown")  # everything -> images
    page.keyboard.press("ArrowDown")  # -> sounds
    page.keyboard.press("ArrowDown")  # -> texts
    assert page.input_value("#among") == "texts"
    page.focus("#words")
    page.keyboard.type("A dog.")
    page.keyboard.press("Enter")
    cards = wait_results(page, "texts")
    assert cards[0]["modality"] == "text" and cards[0]["score"] == "score 1.000"
    assert page.text_content("#results li .words") == "A dog."
    assert page.get_attribute("#results", "aria-live") == "polite"


def test_a_dropped_picture_finds_itself(page: Any, gallery: Path) -> None:
    picture = "animals/mammals/dogs/dog.png"
    page.select_option("#among", "images")
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            document.querySelector("#drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [base64.b64encode((gallery / picture).read_bytes()).decode(), "dog.png"],
    )
    cards = wait_results(page, "images")
    assert cards[0]["path"] == picture and cards[0]["score"] == "score 1.000", cards[0]
    assert "the picture dog.png" in (page.text_content("#status") or "")


def test_query_shown_back_more_like_this_k_and_load_more(page: Any, gallery: Path) -> None:
    page.select_option("#k", "6")
    page.set_input_files("#file", str(gallery / DOG_SOUND))
    cards = wait_results(page, "everything")
    assert len(cards) == 6 and cards[0]["path"] == DOG_SOUND
    # the query's sound is shown back as a player; result players load their duration
    assert page.get_attribute("#query audio", "src").startswith("blob:")
    page.wait_for_function(
        "[...document.querySelectorAll('#results audio')].length > 0 && "
        "[...document.querySelectorAll('#results audio')].every(a => a.duration > 0)"
    )
    assert page.eval_on_selector_all(
        "#results audio", "players => players.every(a => a.preload === 'metadata')"
    )
    page.click("#more")  # the next six
    page.wait_for_function("document.querySelectorAll('#results li').length === 12")
    ids = page.eval_on_selector_all("#results li", "cards => cards.map(li => li.dataset.id)")
    assert len(set(ids)) == 12
    assert page.text_content("#results li:nth-child(7) .rank") == "#7 "
    # more like this: a query by the result's id (the item itself left out)
    liked = page.get_attribute("#results li:nth-child(2)", "data-id")
    page.click("#results li:nth-child(2) .like")
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('more like')"
        " && document.querySelector('#results').getAttribute('aria-busy') === 'false'"
    )
    ids = page.eval_on_selector_all("#results li", "cards => cards.map(li => li.dataset.id)")
    assert len(ids) == 6 and liked not in ids
    assert page.is_hidden("#error")


def test_which_of_these_labels(page: Any, gallery: Path) -> None:
    page.set_input_files("#file", str(gallery / "animals/mammals/dogs/dog.png"))
    wait_results(page, "everything")
    page.fill("#labels", "dog, car, teapot")
    page.fill("#template", "a picture of a {}")
    page.click("#which")
    page.wait_for_function("document.querySelectorAll('#labels-out li').length === 3")
    labels = page.eval_on_selector_all("#labels-out li", "lis => lis.map(li => li.dataset.label)")
    assert sorted(labels) == ["car", "dog", "teapot"]
    assert all(
        "%" in (t or "")
        for t in page.eval_on_selector_all("#labels-out .prob", "ps => ps.map(p => p.textContent)")
    )
    assert page.is_hidden("#error")
    assert page.request.get(page.url + "favicon.svg").status == 200
