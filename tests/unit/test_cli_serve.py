"""``synesthesia serve``: --host/--port reach every service wherever they are placed, other flags
go through to search and ray, and an encoder refuses flags it would otherwise ignore."""

from __future__ import annotations

from typing import Any

import pytest
from synesthesia.apps.cli import main
from synesthesia.modality import Modality

HOST, PORT = "0.0.0.0", 50999


def placements(service: str) -> list[list[str]]:
    flags = ["--host", HOST, "--port", str(PORT)]
    return [
        [service, *flags],
        [*flags, service],
        ["--port", str(PORT), service, "--host", HOST],
        [service, f"--host={HOST}", f"--port={PORT}"],
    ]


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_encoders_get_host_and_port(monkeypatch: pytest.MonkeyPatch, modality: str) -> None:
    import synesthesia.services.encoder.app as encoder_app

    calls: list[tuple[Modality, dict[str, Any]]] = []
    monkeypatch.setattr(encoder_app, "main", lambda m, **kw: calls.append((m, kw)))
    for argv in placements(modality):
        assert main(["serve", *argv]) == 0, argv
        assert calls.pop() == (Modality(modality), {"host": HOST, "port": PORT}), argv
    assert main(["serve", modality]) == 0
    assert calls.pop() == (Modality(modality), {})  # defaults: the settings' own


def _capture(monkeypatch: pytest.MonkeyPatch, service: str) -> list[list[str]]:
    if service == "search":
        import synesthesia.services.search.app as module
    else:
        import synesthesia.services.ray.__main__ as module  # type: ignore[no-redef]
    seen: list[list[str]] = []
    monkeypatch.setattr(module, "cli_main", lambda argv: seen.append(argv) or 0)
    return seen


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("service", ["search", "ray"])
def test_search_and_ray_get_host_port_and_their_own_flags(
    monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    seen = _capture(monkeypatch, service)
    own = (
        ["--data-dir", "/tmp/x"]
        if service == "search"
        else ["--services", "text", "--num-cpus", "2"]
    )
    for argv in placements(service):
        assert main(["serve", *argv, *own]) == 0, argv
        got = seen.pop()
        assert (_value(got, "--host"), _value(got, "--port")) == (HOST, str(PORT)), got
        assert got[-len(own) :] == own, got
    assert main(["serve", service, *own]) == 0
    assert seen.pop() == own


def test_service_help_goes_to_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch, "ray")
    assert main(["serve", "ray", "--help"]) == 0
    assert seen.pop() == ["--help"]


def test_serve_help_and_mistakes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    assert "--host" in capsys.readouterr().out
    with pytest.raises(SystemExit) as unknown:
        main(["serve", "text", "--data-dir", "/tmp/x"])  # an encoder would ignore it
    assert unknown.value.code == 2
    assert "unknown arguments for text: --data-dir /tmp/x" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--p", "1", "text"])  # no abbreviations: --p is not --port
    with pytest.raises(SystemExit):
        main(["serve", "video"])
