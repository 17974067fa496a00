"""charts/synesthesia, offline: the chart lints (strict) and renders in both modes and with both
TLS options (helm-python-sdk, the Helm library without a binary or cluster); built-in kinds
validate against the Kubernetes schemas (kubernetes-validate, strict); the RayService, a CRD
with no offline schema, is checked here: its serveConfigV2 passes Ray Serve's own schema and
equals services/ray/serve_config.yaml, and its pod templates validate as PodTemplates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kv = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "synesthesia"
KUBE = "1.30.0"
VARIANTS: dict[str, dict[str, Any]] = {
    "ray": {},
    "ray-tls-ingress": {"tls": {"enabled": True, "mode": "ingress"}},
    "ray-tls-sidecar": {"tls": {"enabled": True, "mode": "sidecar"}},
    "standalone": {"mode": "standalone"},
    "standalone-secure": {
        "mode": "standalone",
        "standalone": {
            "insecure": False,
            "security": {
                "tlsSecret": "syn-tls",
                "tokensSecret": "syn-tokens",
                "clientTokenSecret": "syn-client-token",
            },
        },
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = helm.Chart.load(str(CHART)).render(values, name="syn", namespace="ml")
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lints_strict(variant: str) -> None:
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_built_in_kinds_validate(variant: str) -> None:
    docs = render(VARIANTS[variant])
    builtin = [d for d in docs if not d["apiVersion"].startswith("ray.io/")]
    assert builtin
    for doc in builtin:
        kv.validate(doc, KUBE, strict=True)


def test_validation_catches_a_broken_manifest() -> None:
    deployment = by_kind(render(VARIANTS["standalone"]), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["grpc"]["port"] = "x"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBE, strict=True)


def test_ray_mode_renders_a_rayservice_with_the_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    docs = render({})
    assert {d["kind"] for d in docs} == {"RayService", "Service", "PersistentVolumeClaim", "Pod"}
    (rs,) = by_kind(docs, "RayService")
    assert rs["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    expected = yaml.safe_load((REPO / "services/ray/serve_config.yaml").read_text())
    for app in expected["applications"]:  # the chart pins the shards to their worker groups
        if app["args"]["service"] == "search":
            app["args"]["search"]["pin_shards"] = True
    assert serve_config == expected
    cluster = rs["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == __import__("ray").__version__
    head = cluster["headGroupSpec"]["template"]
    workers = cluster["workerGroupSpecs"]
    assert workers[0]["groupName"] == "workers"
    assert workers[0]["minReplicas"] <= workers[0]["maxReplicas"]
    for template in (head, *(w["template"] for w in workers)):
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}}
        kv.validate({**pod_template, "template": template}, KUBE, strict=True)
    ports = {p["name"]: p["containerPort"] for p in head["spec"]["containers"][0]["ports"]}
    assert ports["grpc"] == serve_config["grpc_options"]["port"]
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "ray-head"
    assert (
        head["metadata"]["labels"].items()
        >= {k: v for k, v in svc["spec"]["selector"].items() if not k.startswith("ray.io/")}.items()
    )


def test_each_search_shard_owns_a_read_write_once_volume() -> None:
    """No SQLite file on a shared (ReadWriteMany / network) volume: shard i runs alone in the
    worker group shard-<i>, which offers the Ray resource only shard i requires, and mounts its
    own ReadWriteOnce claim; no other Ray pod mounts any claim."""
    from synesthesia.services.ray.app import build_app
    from synesthesia.services.ray.args import AppArgs

    docs = render({})
    claims = by_kind(docs, "PersistentVolumeClaim")
    assert all(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in claims)
    (rs,) = by_kind(docs, "RayService")
    cluster = rs["spec"]["rayClusterConfig"]
    serve_config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    (search,) = [a for a in serve_config["applications"] if a["args"]["service"] == "search"]
    shards = search["args"]["search"]["shards"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    mounted: list[str] = []
    for template in (
        cluster["headGroupSpec"]["template"],
        *(g["template"] for g in groups.values()),
    ):
        for volume in template["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                mounted.append(volume["persistentVolumeClaim"]["claimName"])
    assert sorted(mounted) == sorted(c["metadata"]["name"] for c in claims)
    assert len(claims) == shards
    app = build_app(AppArgs.model_validate(search["args"]))
    for i, shard in enumerate(app._bound_deployment.init_args[0]):
        group = groups[f"shard-{i}"]
        assert group["replicas"] == group["maxReplicas"] == 1
        needs = shard._bound_deployment.ray_actor_options["resources"]
        assert needs == {f"synesthesia_shard_{i}": 1}
        offered = yaml.safe_load(group["rayStartParams"]["resources"].strip("'\""))
        assert offered == needs
        (claim,) = [
            v["persistentVolumeClaim"]["claimName"]
            for v in group["template"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claim == f"syn-synesthesia-shard-{i}"
    for variant in VARIANTS.values():
        for claim in by_kind(render(variant), "PersistentVolumeClaim"):
            assert "ReadWriteMany" not in claim["spec"]["accessModes"]


def test_tls_options_front_the_grpc_proxy() -> None:
    ingress = by_kind(render(VARIANTS["ray-tls-ingress"]), "Ingress")[0]
    assert ingress["spec"]["tls"][0]["secretName"] == "synesthesia-tls"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "syn-synesthesia-grpc", "port": {"name": "grpc"}}
    assert (
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    )

    docs = render(VARIANTS["ray-tls-sidecar"])
    (rs,) = by_kind(docs, "RayService")
    containers = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["ray-head", "tls-proxy"]
    conf = by_kind(docs, "ConfigMap")[0]["data"]["grpc-tls.conf"]
    assert "listen 9443 ssl" in conf and "grpc_pass grpc://127.0.0.1:9000" in conf
    assert {p["name"] for p in by_kind(docs, "Service")[0]["spec"]["ports"]} == {"grpc", "grpc-tls"}

    with pytest.raises(helm.HelmError):
        render({"tls": {"enabled": True, "mode": "plaintext"}})


def test_standalone_mode_has_grpc_probes_services_and_a_pvc() -> None:
    docs = render(VARIANTS["standalone"])
    assert not by_kind(docs, "RayService")
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(docs, "Deployment")
    }
    services = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "Service")
    }
    assert set(deployments) == set(services) == {"text", "image", "audio", "search"}
    for name, dep in deployments.items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", name]  # the README's command
        port = container["ports"][0]["containerPort"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, (name, probe)
        selector = services[name]["spec"]["selector"]
        assert dep["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        assert services[name]["spec"]["ports"][0]["port"] == port
    search = deployments["search"]
    assert search["spec"]["replicas"] == 1 and search["spec"]["strategy"]["type"] == "Recreate"
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    claim = search["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == pvc["metadata"]["name"]
    env = {
        e["name"]: e["value"] for e in search["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SYNESTHESIA_TEXT_ENCODER"] == "syn-synesthesia-text:50051"
    assert env["SYNESTHESIA_DATA_DIR"] == "/data/index"


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GPU_NODES = {"nvidia.com/gpu.present": "true"}


def test_gpu_values_render_for_standalone_encoders() -> None:
    gpu = {"gpus": 1, "nodeSelector": GPU_NODES, "tolerations": [GPU_TOLERATION]}
    values = {"mode": "standalone", "standalone": {"encoders": {"image": gpu}}}
    docs = render(values)
    for doc in docs:
        kv.validate(doc, KUBE, strict=True)
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(docs, "Deployment")
    }
    pod = deployments["image"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["cpu"] == "2"  # the rest of the resources kept
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SYNESTHESIA_DEVICE"] == "cuda"
    assert pod["nodeSelector"] == GPU_NODES and pod["tolerations"] == [GPU_TOLERATION]
    text = deployments["text"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in text and "tolerations" not in text
    assert "nvidia.com/gpu" not in text["containers"][0]["resources"]["limits"]


def test_gpu_worker_group_renders_for_ray() -> None:
    from ray.serve.schema import ServeDeploySchema
    from synesthesia.services.ray.args import AppArgs

    base = yaml.safe_load((REPO / "services/ray/serve_config.yaml").read_text())
    for app in base["applications"]:
        if app["name"] == "image":
            app["args"]["encoder"]["precision"] = "bf16"
            app["args"]["scaling"]["num_gpus"] = 1
    values = {
        "ray": {
            "gpuWorker": {"enabled": True, "nodeSelector": GPU_NODES},
            "worker": {"nodeSelector": {"pool": "cpu"}},
            "serveConfig": base,
        }
    }
    (rs,) = by_kind(render(values), "RayService")
    serve_config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    image = next(a for a in serve_config["applications"] if a["name"] == "image")
    assert AppArgs.model_validate(image["args"]).scaling.num_gpus == 1
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert list(groups) == ["workers", "gpu-workers", "shard-0", "shard-1", "shard-2"]
    gpu = groups["gpu-workers"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert "num-gpus" not in groups["workers"]["rayStartParams"]
    for group in groups.values():
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}}
        kv.validate({**pod_template, "template": group["template"]}, KUBE, strict=True)
    spec = gpu["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == GPU_NODES and spec["tolerations"] == [GPU_TOLERATION]
    assert groups["workers"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}


@pytest.mark.parametrize(
    "values, where",
    [
        ({"mode": "standalon"}, "/mode"),
        ({"unknownKey": 1}, "unknownKey"),
        ({"ray": {"grpcPort": "9000x"}}, "/ray/grpcPort"),
        ({"standalone": {"encoders": {"text": {"replicas": -1}}}}, "replicas"),
        ({"tls": {"mode": "sidecars"}}, "/tls/mode"),
    ],
)
def test_values_schema_refuses_unknown_keys_and_bad_values(
    values: dict[str, Any], where: str
) -> None:
    with pytest.raises(Exception, match="schema") as err:
        render(values)
    assert where in str(err.value)
    report = helm.lint(str(CHART), values, strict=True)
    assert any(where in m for m in report["errors"]), report


def _pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for doc in docs:
        if doc["kind"] == "Pod":
            specs.append(doc["spec"])
        elif doc["kind"] in ("Deployment", "StatefulSet"):
            specs.append(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            specs.append(cluster["headGroupSpec"]["template"]["spec"])
            specs += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    return specs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_pod_meets_the_restricted_pod_security_standard(variant: str) -> None:
    specs = _pod_specs(render(VARIANTS[variant]))
    assert specs
    for spec in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, container["name"]
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
            assert not sc.get("privileged"), container["name"]
        assert not any("hostPath" in v for v in spec.get("volumes", []))


@pytest.mark.parametrize("variant", ["ray", "standalone"])
def test_helm_test_hook_checks_health_and_one_embed(variant: str) -> None:
    (pod,) = [d for d in render(VARIANTS[variant]) if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["args"][0]
    assert "synesthesia.apps.healthcheck" in command and "synesthesia embed" in command
    if variant == "ray":
        assert "syn-synesthesia-grpc:9000" in command and "--application text" in command
    else:
        assert "syn-synesthesia-text:50051" in command


def test_helm_test_hook_command_passes_against_a_real_encoder() -> None:
    """The hook's shell command, pointed at a local text encoder, exits 0 (and fails when
    nothing listens)."""
    import os
    import subprocess
    import sys

    from synesthesia.modality import Modality
    from synesthesia.services.encoder.app import start_encoder
    from synesthesia.services.encoder.config import load_embedder
    from synesthesia.services.encoder.settings import EncoderSettings

    from tests.servers import running

    (pod,) = [d for d in render(VARIANTS["standalone"]) if d["kind"] == "Pod"]
    command = pod["spec"]["containers"][0]["args"][0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    text = EncoderSettings(modality=Modality.TEXT, port=0)
    with running(lambda: start_encoder(text, load_embedder(text, Modality.TEXT))) as (server, _):
        local = command.replace("syn-synesthesia-text:50051", f"127.0.0.1:{server.port}")
        done = subprocess.run(["sh", "-c", local], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "a barking dog" in done.stdout
    nothing = command.replace("syn-synesthesia-text:50051", "127.0.0.1:1").replace(
        "--wait 120", "--wait 1"
    )
    nothing = nothing.replace("--timeout 120", "--timeout 2")
    assert subprocess.run(["sh", "-c", nothing], env=env, capture_output=True).returncode != 0


def test_the_secure_standalone_variant_wires_tls_and_tokens_everywhere() -> None:
    """Every server gets TLS (mTLS), the tokens file and no insecure flag; the search service
    calls the encoders with the certificate and the client token; probes and `helm test` speak
    TLS through the image's health check; the settings named are real ones."""
    from synesthesia.services.encoder.settings import EncoderSettings
    from synesthesia.services.search.settings import SearchSettings

    docs = render(VARIANTS["standalone-secure"])
    client = {
        "SYNESTHESIA_CLIENT_TLS_CA",
        "SYNESTHESIA_CLIENT_TLS_CERT",
        "SYNESTHESIA_CLIENT_TLS_KEY",
    }
    for dep in by_kind(docs, "Deployment"):
        name = dep["metadata"]["name"].rsplit("-", 1)[1]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
        assert "SYNESTHESIA_INSECURE" not in env
        assert env["SYNESTHESIA_TLS_CERT"] == "/certs/tls.crt"
        assert env["SYNESTHESIA_TLS_CLIENT_CA"] == "/certs/ca.crt"
        assert env["SYNESTHESIA_TOKENS_FILE"] == "/secrets/tokens.txt"
        cls = SearchSettings if name == "search" else EncoderSettings
        known = {f"SYNESTHESIA_{n.upper()}" for n in cls.model_fields} | client
        known |= {"SYNESTHESIA_TOKEN"}
        assert set(env) <= known, sorted(set(env) - known)
        if name == "search":
            assert env["SYNESTHESIA_ENCODER_TLS_CA"] == "/certs/ca.crt"
            assert env["SYNESTHESIA_ENCODER_TOKEN"]["secretKeyRef"]["name"] == "syn-client-token"
        assert "exec" in c["startupProbe"] and "grpc" not in c["readinessProbe"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/certs", "/secrets"} <= mounts
    (pod,) = by_kind(docs, "Pod")
    env = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert client | {"SYNESTHESIA_TOKEN"} <= env
