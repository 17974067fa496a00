"""Loading ImageBind weights one modality at a time, and converting the official checkpoint.

Two on-disk forms load the same way:

* the official ``imagebind_huge.pth`` (a plain ``torch.save``'d state_dict). It is opened with
  ``torch.load(mmap=True, weights_only=True)``: unpickling maps the file without reading it,
  and only the requested modalities' tensors are copied out (so an audio service touches ~0.3
  GB of the 4.5 GB file and keeps nothing of the rest);
* a folder written by ``convert_checkpoint``: one ``<modality>.safetensors`` per modality.

The model is built on the ``meta`` device and the loaded tensors are assigned into it, so no
random weights are ever allocated just to be overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from synesthesia.errors import FailedPrecondition
from synesthesia.models.imagebind.config import ImageBindConfig
from synesthesia.models.imagebind.model import ImageBindModel

log = logging.getLogger(__name__)

SLICE_FORMAT = "synesthesia-imagebind-slice/1"
_GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")


class CheckpointError(FailedPrecondition):
    """The checkpoint is missing, unreadable, or does not fit the configured architecture."""


def key_modality(key: str) -> str | None:
    """``modality_trunks.audio.blocks.0...`` -> ``audio``; None for keys outside the four groups."""
    group, _, rest = key.partition(".")
    return rest.partition(".")[0] if group in _GROUPS else None


def _open_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
        log.warning("cannot mmap %s (%s); reading it whole", path, exc)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):  # tolerate {"model": state_dict} wrappers
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and len(obj) <= 3:
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state_dict (got {type(obj).__name__})")
    return obj


def read_state_dict(checkpoint: str | Path, modalities: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``modalities`` only, in fresh memory that does not pin the source file."""
    path = Path(checkpoint).expanduser()
    wanted = set(modalities)
    if path.is_dir():
        out: dict[str, torch.Tensor] = {}
        for m in sorted(wanted):
            file = path / f"{m}.safetensors"
            if not file.is_file():
                raise CheckpointError(f"{file} is missing (write it with convert_checkpoint)")
            with safe_open(file, framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("modality") != m:
                    raise CheckpointError(f"{file} holds modality {meta.get('modality')!r}")
                out.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
        return out
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    full = _open_pth(path)
    out = {k: v.clone() for k, v in full.items() if key_modality(k) in wanted}
    del full  # drops the mapping of the whole file
    missing = wanted - {key_modality(k) for k in out}
    if missing:
        raise CheckpointError(f"{path} has no weights for {sorted(missing)}")
    return out


def load_model(
    config: ImageBindConfig,
    checkpoint: str | Path,
    modalities: Iterable[str],
    dtype: torch.dtype = torch.float32,
) -> ImageBindModel:
    """Build ``modalities`` of the model and load their weights strictly."""
    modalities = tuple(modalities)
    with torch.device("meta"):
        model = ImageBindModel(config, modalities)
    state = read_state_dict(checkpoint, modalities)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{checkpoint} does not match the configured ImageBind architecture: {exc}"
        ) from None
    return model.to(dtype).eval().requires_grad_(False)


def random_model(
    config: ImageBindConfig, modalities: Iterable[str], seed: int = 0
) -> ImageBindModel:
    """A randomly initialised model (tests, and services started without a checkpoint).
    The global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageBindModel(config, tuple(modalities))
    return model.eval().requires_grad_(False)


def convert_checkpoint(checkpoint: str | Path, outdir: str | Path) -> dict[str, Path]:
    """Split an official ``.pth`` into ``outdir/<modality>.safetensors``, one per modality found
    (depth, thermal and imu too, although this package does not build them). Tensors are
    streamed from the memory-mapped source, one modality at a time; the output loads faster
    and without pickle. Returns ``{modality: path}``."""
    src = Path(checkpoint).expanduser()
    if not src.is_file():
        raise CheckpointError(f"checkpoint {src} does not exist")
    out_dir = Path(outdir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    full = _open_pth(src)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in full.items():
        m = key_modality(key)
        if m is None:
            raise CheckpointError(f"{src}: unexpected key {key!r} (not an ImageBind state_dict?)")
        groups.setdefault(m, {})[key] = tensor.contiguous()
    written: dict[str, Path] = {}
    for m, tensors in groups.items():
        dest = out_dir / f"{m}.safetensors"
        tmp = dest.with_suffix(".safetensors.tmp")
        save_file(tensors, str(tmp), metadata={"format": SLICE_FORMAT, "modality": m})
        tmp.replace(dest)  # a crash never leaves a half-written slice under the final name
        written[m] = dest
        log.info("wrote %s (%d tensors)", dest, len(tensors))
    return written
