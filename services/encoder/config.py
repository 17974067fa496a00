"""What an encoder loads and how it batches: ONE config type with one set of defaults, used by
``synesthesia serve text|image|audio`` and docker-compose (through EncoderSettings, from the
environment) and by Ray Serve (the ``encoder:`` args of an application), and the one function
that loads the model from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from synesthesia.media.audio import DEFAULT_MAX_SECONDS
from synesthesia.media.image import DEFAULT_MAX_PIXELS
from synesthesia.media.text import DEFAULT_MAX_TEXT_BYTES
from synesthesia.modality import Modality
from synesthesia.models import Embedder, create_model
from synesthesia.models.device import DEVICE_PATTERN
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_MODEL = "synesthesia-minilm"
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_ITEMS_PER_REQUEST = 512
#: auto model workers stop here (each holds a batch of activations); more CPUs give threads
MAX_AUTO_WORKERS = 4
#: a model this large runs one pass at a time on every thread by default (ImageBind-Huge's
#: towers: 86-633 M parameters; the shipped towers: 23-25 M)
LARGE_MODEL_PARAMETERS = 60_000_000


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="registry name of the model family")
    checkpoint: str | None = Field(None, description="local weights path (never downloaded)")
    device: str = Field(
        "cpu",
        pattern=DEVICE_PATTERN,
        description="cpu, cuda, cuda:N, or auto (cuda when a GPU is visible, else cpu); an "
        "absent GPU fails at start-up",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="weights and activations; vectors are float32 either way. fp16 needs a "
        "GPU; bf16 is fast on CPUs with AVX-512 BF16/AMX (docs/benchmarks.md)",
    )
    max_batch_size: int = Field(
        DEFAULT_MAX_BATCH_SIZE, ge=1, description="model rows per forward pass"
    )
    max_wait_ms: float = Field(
        DEFAULT_MAX_WAIT_MS,
        ge=0,
        description="how long a batch waits to fill up (longer, up to a tenth of the recent "
        "forward pass, for a slow model)",
    )
    max_items_per_request: int = Field(DEFAULT_MAX_ITEMS_PER_REQUEST, ge=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_audio_seconds: float = Field(DEFAULT_MAX_SECONDS, gt=0)
    max_text_bytes: int = Field(DEFAULT_MAX_TEXT_BYTES, ge=1)
    torch_threads: int = Field(
        0,
        ge=0,
        description="threads of one forward pass; 0: auto (see model_workers)",
    )
    model_workers: int = Field(
        0,
        ge=0,
        description="forward passes run at once (standalone service); 0: auto. Auto on the CPU: "
        "one single-threaded worker per CPU the process may use (cgroup quota counted), at most "
        "4, then more threads per worker (several small passes keep the cores busier than one "
        "pass split over threads); on a GPU or for a large model (60 M parameters or more): "
        "one worker",
    )
    prepare_threads: int = Field(2, ge=1, description="threads decoding media")

    def parallelism(self, cpus: int, gpu: bool = False, parameters: int = 0) -> tuple[int, int]:
        """(model workers, torch threads per worker) for a process that owns ``cpus`` CPUs and
        runs a model of ``parameters`` on a GPU or not (``device`` resolved): the values given,
        the unset one filled so that workers x threads = cpus (at least 1 each). A GPU, or a
        large model (one pass of it has work enough for every core), gets one worker with every
        CPU's thread unless told otherwise."""
        cpus = max(1, cpus)
        workers, threads = self.model_workers, self.torch_threads
        if not workers and (gpu or parameters >= LARGE_MODEL_PARAMETERS):
            workers = 1
        if workers and threads:
            return workers, threads
        if threads:
            return max(1, cpus // threads), threads
        if workers:
            return workers, max(1, cpus // workers)
        workers = min(cpus, MAX_AUTO_WORKERS)
        return workers, max(1, cpus // workers)

    @model_validator(mode="after")
    def _no_fp16_on_cpu(self) -> EncoderConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision fp16 needs a GPU (device cuda or auto); use bf16 on cpu")
        return self


def load_embedder(config: EncoderConfig, modality: Modality) -> Embedder:
    """The model for one modality (only that modality's weights are loaded), on the configured
    device and precision; an unknown or absent device, or fp16 on the CPU, raises
    FailedPrecondition here, at start-up."""
    kwargs: dict[str, object] = {
        "modalities": [modality],
        "max_image_pixels": config.max_image_pixels,
        "max_audio_seconds": config.max_audio_seconds,
        "max_text_bytes": config.max_text_bytes,
        "device": config.device,
        "precision": config.precision,
    }
    if config.checkpoint:
        kwargs["checkpoint"] = config.checkpoint
    return create_model(config.model, **kwargs)
