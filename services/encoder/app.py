"""Build, warm up and run one encoder service."""

from __future__ import annotations

import asyncio
import logging
import time

import torch
from synesthesia.modality import Modality
from synesthesia.models import Embedder
from synesthesia.models.device import available_cpus, resolve_device
from synesthesia.services.encoder.config import load_embedder
from synesthesia.services.encoder.core import EncoderCore
from synesthesia.services.encoder.servicer import EncoderServicer
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.services.encoder.warmup import warmup_item
from synesthesia.serving.context import configure_logging
from synesthesia.serving.metrics import start_metrics_server
from synesthesia.serving.server import RunningServer, ServiceSpec, build_server, serve_forever
from synesthesia.v1 import encoder_pb2, encoder_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name


def parameters(embedder: Embedder) -> int:
    """The parameter count of the embedder's torch model (0 if it has none)."""
    module = getattr(embedder, "model", None)
    if not isinstance(module, torch.nn.Module):
        return 0
    return sum(p.numel() for p in module.parameters())


async def start_encoder(
    settings: EncoderSettings, embedder: Embedder | None = None
) -> tuple[RunningServer, EncoderServicer]:
    """Start the server (NOT_SERVING), load and warm the model, then report SERVING."""
    gpu = resolve_device(settings.device).type != "cpu"  # an absent GPU fails here
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    if embedder is None:
        model = await loop.run_in_executor(None, lambda: load_embedder(settings, settings.modality))
    else:
        model = embedder
    workers, threads = settings.parallelism(available_cpus(), gpu, parameters(model))
    torch.set_num_threads(threads)  # threads made from now on (the model workers) use this
    log.info(
        "%s %s in %.1f s (device %s, precision %s, %d model worker(s) x %d thread(s))",
        "loaded" if embedder is None else "given",
        model.info().model_id,
        time.perf_counter() - t0,
        settings.device,
        settings.precision,
        workers,
        threads,
    )
    core = EncoderCore(
        model, settings.modality, settings.max_items_per_request, settings.max_message_bytes
    )
    servicer = EncoderServicer(
        core,
        settings.max_batch_size,
        settings.max_wait_ms / 1000,
        settings.prepare_threads,
        model_workers=workers,
    )
    running = await build_server(
        [
            ServiceSpec(
                servicer, encoder_pb2_grpc.add_EncoderServiceServicer_to_server, SERVICE_NAME
            )
        ],
        host=settings.host,
        port=settings.resolved_port(),
        max_message_bytes=settings.max_message_bytes,
        security=settings,
        max_in_flight=settings.max_in_flight,
    )
    await loop.run_in_executor(
        None, lambda: model.embed(settings.modality, [warmup_item(settings.modality)])
    )
    await running.set_serving(True)
    log.info("%s encoder SERVING on port %d", settings.modality.value, running.port)
    return running, servicer


def run(settings: EncoderSettings) -> None:
    """Blocking entry point of ``synesthesia serve text|image|audio``."""
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port, settings.host)
    holder: dict[str, EncoderServicer] = {}

    async def start() -> RunningServer:
        running, servicer = await start_encoder(settings)
        holder["servicer"] = servicer
        return running

    async def on_stop() -> None:
        if "servicer" in holder:
            await holder["servicer"].close()

    asyncio.run(serve_forever(start, settings.grace_seconds, on_stop))


def main(modality: Modality, **overrides: object) -> None:
    """Entry point shared by ``python -m synesthesia.services.<modality>`` and the CLI."""
    settings = EncoderSettings(modality=modality, **overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    run(settings)
