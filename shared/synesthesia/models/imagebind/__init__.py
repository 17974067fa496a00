"""The ``imagebind`` family: ImageBind's vision, text and audio towers with the official
checkpoint's key names, reference-exact preprocessing, and per-modality loading.

Registered models:

* ``imagebind-huge``: needs ``checkpoint=`` (the official ``imagebind_huge.pth`` the user
  downloaded, or a folder written by ``convert_checkpoint``). Nothing is ever downloaded.
* ``imagebind-test``: the tiny golden-set sizes (or ``config=`` a dict / JSON path, e.g. the
  golden ``config.json``); random weights unless ``checkpoint=`` is given.

Both take ``modalities=`` (load only those towers), ``device=`` (cpu, cuda, cuda:N, auto),
``precision=`` (fp32, bf16, fp16; or ``dtype=`` a torch dtype), ``audio_channels=``
("reference" or "mix"), ``max_audio_seconds=`` and ``max_image_pixels=``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from synesthesia.errors import FailedPrecondition
from synesthesia.modality import Modality
from synesthesia.models.device import precision_name, resolve_device, resolve_precision
from synesthesia.models.imagebind.checkpoint import (
    CheckpointError,
    convert_checkpoint,
    load_model,
    random_model,
    read_state_dict,
)
from synesthesia.models.imagebind.config import (
    IMAGEBIND_HUGE,
    IMAGEBIND_TEST,
    ImageBindConfig,
    TowerConfig,
)
from synesthesia.models.imagebind.embedder import TOWER, ImageBindEmbedder
from synesthesia.models.imagebind.model import ImageBindModel
from synesthesia.models.registry import register_model

__all__ = [
    "IMAGEBIND_HUGE",
    "IMAGEBIND_TEST",
    "CheckpointError",
    "ImageBindConfig",
    "ImageBindEmbedder",
    "ImageBindModel",
    "TowerConfig",
    "convert_checkpoint",
    "create_imagebind",
    "read_state_dict",
]


def _towers(modalities: Iterable[Modality | str] | None) -> list[str]:
    chosen = list(Modality) if modalities is None else [Modality.parse(m) for m in modalities]
    return [TOWER[m] for m in chosen]


def create_imagebind(
    model_id: str,
    config: ImageBindConfig,
    checkpoint: str | Path | None,
    modalities: Iterable[Modality | str] | None = None,
    device: str | torch.device = "cpu",
    precision: str | None = None,
    dtype: torch.dtype | str | None = None,
    **embedder_kwargs: Any,
) -> ImageBindEmbedder:
    """Build an Embedder holding only ``modalities``' weights (random when no checkpoint), on
    ``device`` in ``precision`` (a bad device or precision fails here, before any loading)."""
    dev = resolve_device(device)
    if precision is None:
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        precision = precision_name(dtype if isinstance(dtype, torch.dtype) else torch.float32)
    dt = resolve_precision(precision, dev)
    towers = _towers(modalities)
    if checkpoint is None:
        model = random_model(config, towers).to(dt)
    else:
        model = load_model(config, checkpoint, towers, dt)
    return ImageBindEmbedder(model, model_id, device=dev, **embedder_kwargs)


@register_model("imagebind-huge")
def imagebind_huge(checkpoint: str | Path | None = None, **kwargs: Any) -> ImageBindEmbedder:
    if checkpoint is None or str(checkpoint) == "":
        raise FailedPrecondition(
            "imagebind-huge needs checkpoint=<path>: the official imagebind_huge.pth "
            "(download it yourself; CC BY-NC-SA 4.0) or a folder from `synesthesia convert "
            "imagebind`. Nothing is downloaded."
        )
    return create_imagebind("imagebind-huge", IMAGEBIND_HUGE, checkpoint, **kwargs)


@register_model("imagebind-test")
def imagebind_test(
    checkpoint: str | Path | None = None,
    config: ImageBindConfig | dict[str, Any] | str | Path | None = None,
    **kwargs: Any,
) -> ImageBindEmbedder:
    if config is None:
        cfg = IMAGEBIND_TEST
    elif isinstance(config, ImageBindConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = ImageBindConfig.from_dict(config)
    else:
        cfg = ImageBindConfig.from_json(config)
    return create_imagebind("imagebind-test", cfg, checkpoint, **kwargs)
