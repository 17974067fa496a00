"""The Serve config YAML and the application builder, without starting Ray: the YAML passes Ray's
own schema, every application builds through Ray's builder path (typed args validated into
AppArgs), the gRPC servicer functions import from the installed package, bad args are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray

pytest.importorskip("ray")

CONFIG = Path(__file__).resolve().parents[2] / "services" / "ray" / "serve_config.yaml"


def load() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(CONFIG.read_text())


def test_config_passes_ray_schema_and_every_app_builds() -> None:
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema
    from synesthesia.services.ray.app import GRPC_SERVICER_FUNCTIONS, build_app

    schema = ServeDeploySchema.model_validate(load())
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    names = set()
    for app in schema.applications:
        assert app.import_path == "synesthesia.services.ray.app:build_app"
        built = call_user_app_builder_with_args_if_necessary(build_app, app.args)
        names.add(built._bound_deployment.name)
    assert names == {"TextEncoder", "ImageEncoder", "AudioEncoder", "SearchRouter"}
    assert [a.name for a in schema.applications] == ["text", "image", "audio", "search"]


def test_servicer_functions_import_from_the_package() -> None:
    import importlib

    from synesthesia.services.ray.app import GRPC_SERVICER_FUNCTIONS

    for path in GRPC_SERVICER_FUNCTIONS:
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_bad_args_are_refused() -> None:
    from pydantic import ValidationError
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from synesthesia.services.ray.app import build_app

    for args in (
        {"service": "video"},
        {"service": "text", "scaling": {"num_cpus": 0}},
        {"service": "search", "search": {"shards": 0}},
        {"service": "text", "encoder": {"max_batch_sise": 8}},
    ):
        with pytest.raises(ValidationError):
            call_user_app_builder_with_args_if_necessary(build_app, args)


def test_search_app_binds_one_single_replica_deployment_per_shard() -> None:
    from synesthesia.services.ray.app import build_app
    from synesthesia.services.ray.args import AppArgs, SearchOptions

    app = build_app(AppArgs(service="search", search=SearchOptions(shards=4)))
    shards = app._bound_deployment.init_args[0]
    assert [s._bound_deployment.name for s in shards] == [f"SearchShard{i}" for i in range(4)]
    assert all(s._bound_deployment.num_replicas == 1 for s in shards)


def test_shard_of_is_stable_and_spreads() -> None:
    from synesthesia.services.ray.search_shard import shard_of

    assert shard_of("bark.wav", 3) == shard_of("bark.wav", 3)
    counts = [0, 0, 0]
    for i in range(3000):
        counts[shard_of(f"id-{i}", 3)] += 1
    assert min(counts) > 900, counts


def test_num_gpus_reserves_a_gpu_and_moves_the_encoder_to_it() -> None:
    from synesthesia.services.ray.app import build_app
    from synesthesia.services.ray.args import AppArgs

    def bound(args: dict) -> tuple[dict, dict]:  # type: ignore[type-arg]
        deployment = build_app(AppArgs.model_validate(args))._bound_deployment
        return deployment.ray_actor_options, deployment.init_args[1]

    actor, encoder = bound({"service": "image", "scaling": {"num_cpus": 2, "num_gpus": 0.5}})
    assert actor["num_gpus"] == 0.5 and actor["num_cpus"] == 2
    assert encoder["device"] == "cuda"  # the GPU Ray gives the replica
    actor, encoder = bound(
        {"service": "image", "encoder": {"device": "cuda:0", "precision": "bf16"},
         "scaling": {"num_gpus": 1}}
    )  # fmt: skip
    assert encoder["device"] == "cuda:0" and encoder["precision"] == "bf16"
    actor, encoder = bound({"service": "text"})
    assert "num_gpus" not in actor and encoder["device"] == "cpu"
