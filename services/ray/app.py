"""``build_app``: the Ray Serve application builder named in serve_config.yaml
(``import_path: synesthesia.services.ray.app:build_app``). One application per service, so each
scales on its own and maps one-to-one onto a standalone deployable (text, image, audio, search).

No ``from __future__ import annotations`` here: Ray reads the builder's parameter annotation to
validate ``args`` into AppArgs."""

from typing import Any

from ray.serve import Application
from synesthesia.services.ray.args import AppArgs

# What Ray's gRPC proxy must mount (grpc_options.grpc_servicer_functions): importable from the
# installed package, never from the working directory.
GRPC_SERVICER_FUNCTIONS = [
    "synesthesia.v1.encoder_pb2_grpc.add_EncoderServiceServicer_to_server",
    "synesthesia.v1.search_pb2_grpc.add_SearchServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]

DEPLOYMENT_NAMES = {
    "text": "TextEncoder",
    "image": "ImageEncoder",
    "audio": "AudioEncoder",
    "search": "SearchRouter",
}


def build_encoder_app(service: str, args: AppArgs) -> Application:
    from synesthesia.services.ray.encoder import EncoderDeployment

    encoder = args.encoder
    if args.scaling.num_gpus and "device" not in encoder.model_fields_set:
        # Ray sets CUDA_VISIBLE_DEVICES for the replica: "cuda" is the GPU it was given
        encoder = encoder.model_copy(update={"device": "cuda"})
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAMES[service],
        "user_config": {
            "max_batch_size": encoder.max_batch_size,
            "max_wait_ms": encoder.max_wait_ms,
        },
        **args.scaling.deployment_options(),
    }
    return EncoderDeployment.options(**options).bind(
        service, encoder.model_dump(), args.scaling.num_cpus, _path(args.tokens_file)
    )


def _path(path: object | None) -> str | None:
    return None if path is None else str(path)


def build_app(args: AppArgs) -> Application:
    """The application hosting ``args.service``; ``args`` may also be a plain dict."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    if args.service == "search":
        from synesthesia.services.ray.search_app import build_search_app

        return build_search_app(args)
    return build_encoder_app(args.service, args)
