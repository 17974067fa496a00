"""Per-modality loading, conversion to safetensors, and checkpoint errors (synthetic weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synesthesia.errors import FailedPrecondition
from synesthesia.models import create_model
from synesthesia.models.imagebind import (
    CheckpointError,
    ImageBindConfig,
    TowerConfig,
    convert_checkpoint,
)
from synesthesia.models.imagebind.checkpoint import key_modality, random_model

torch.set_num_threads(2)

# big enough that 10 % of a modality (>= 4 MB) is well above interpreter noise
MEDIUM = ImageBindConfig(
    out_embed_dim=128,
    vision=TowerConfig(512, 6, 8),
    text=TowerConfig(256, 2, 4),
    audio=TowerConfig(512, 6, 8),
)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the official format: one torch.save'd state_dict of every modality,
    including one we do not build (a depth tensor, as the real file has)."""
    state = random_model(MEDIUM, ("vision", "text", "audio"), seed=3).state_dict()
    state["modality_trunks.depth.blocks.0.mlp.fc1.weight"] = torch.randn(2048, 512)
    path = tmp_path_factory.mktemp("ckpt") / "imagebind_medium.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def converted(official: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    written = convert_checkpoint(official, out)
    assert sorted(written) == ["audio", "depth", "text", "vision"]
    return out


def test_converted_folder_loads_the_same_weights(official: Path, converted: Path) -> None:
    a = create_model("imagebind-test", config=MEDIUM, checkpoint=official, modalities=["text"])
    b = create_model("imagebind-test", config=MEDIUM, checkpoint=converted, modalities=["text"])
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    texts = ["a dog barking", "rain on a roof"]
    np.testing.assert_array_equal(a.embed("text", texts), b.embed("text", texts))
    # the weights are the checkpoint's, not a random init
    ref = torch.load(official, weights_only=True)
    assert torch.equal(
        sa["modality_trunks.text.blocks.1.mlp.fc2.weight"],
        ref["modality_trunks.text.blocks.1.mlp.fc2.weight"],
    )


def test_only_requested_modality_is_built(official: Path) -> None:
    emb = create_model("imagebind-test", config=MEDIUM, checkpoint=official, modalities=["audio"])
    assert {key_modality(k) for k in emb.model.state_dict()} == {"audio"}
    assert [m.value for m in emb.info().modalities] == ["audio"]
    with pytest.raises(Exception, match="not served here"):
        emb.embed("text", ["hello"])


_MEASURE = r"""
import gc, json, os, sys, tempfile, torch
torch.set_num_threads(1)
from safetensors.torch import save_file, load_file
from synesthesia.models.imagebind import ImageBindConfig
from synesthesia.models.imagebind.checkpoint import key_modality, load_model

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

cfg = ImageBindConfig.from_dict(json.loads(sys.argv[1]))
ckpt, modality, source = sys.argv[2], sys.argv[3], sys.argv[4]
with tempfile.TemporaryDirectory() as d:  # warm up the loaders' code paths on tiny files
    torch.save({"x": torch.ones(4)}, d + "/w.pth")
    torch.load(d + "/w.pth", mmap=True, weights_only=True)
    save_file({"x": torch.ones(4)}, d + "/w.safetensors")
    load_file(d + "/w.safetensors")
gc.collect()
before = rss()
model = load_model(cfg, ckpt, [modality])
for t in model.state_dict().values():  # touch every page: safetensors slices are mmap-backed
    float(t.float().sum())
gc.collect()
after = rss()
storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for t in model.state_dict().values()}
full = torch.load(source, mmap=True, weights_only=True)
slice_bytes = sum(t.nbytes for k, t in full.items() if key_modality(k) == modality)
print(json.dumps({"rss_delta": after - before, "kept": sum(storages.values()),
                  "slice": slice_bytes}))
"""


def _measure(ckpt: Path, modality: str, source: Path) -> dict[str, int]:
    cfg = json.dumps(MEDIUM.to_dict())
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, cfg, str(ckpt), modality, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("modality", "form"), [("audio", "pth"), ("audio", "folder"), ("vision", "pth")]
)
def test_per_modality_load_holds_at_most_1_1x_its_bytes(
    official: Path, converted: Path, modality: str, form: str
) -> None:
    m = _measure(official if form == "pth" else converted, modality, official)
    assert m["kept"] <= 1.1 * m["slice"]
    # measured RSS: ~1.05x (pth), ~1.0x (folder); the whole file is ~3x one slice
    assert m["rss_delta"] <= 1.1 * m["slice"], m


def test_checkpoint_errors(official: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("imagebind-test", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="does not match"):
        create_model("imagebind-test", checkpoint=official, modalities=["audio"])  # tiny config
    with pytest.raises(CheckpointError, match="missing"):
        create_model("imagebind-test", config=MEDIUM, checkpoint=tmp_path, modalities=["audio"])
    with pytest.raises(FailedPrecondition, match="needs checkpoint"):
        create_model("imagebind-huge")
    torch.save({"modality_trunks.audio.x": torch.ones(1)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="no weights for"):
        create_model("imagebind-test", checkpoint=tmp_path / "partial.pth", modalities=["text"])


def test_service_settings_kwargs_are_accepted() -> None:
    """The encoder service passes its media limits; bad items fail as InvalidInput."""
    from synesthesia.errors import InvalidInput

    kw = {"max_image_pixels": 1000, "max_audio_seconds": 1.0, "max_text_bytes": 10}
    text = create_model("imagebind-test", modalities=["text"], **kw)
    assert text.embed("text", ["short"]).shape == (1, 32)
    with pytest.raises(InvalidInput, match="item 0"):
        text.embed("text", ["far more than ten bytes"])
    audio = create_model("imagebind-test", modalities=["audio"], **kw)
    with pytest.raises(InvalidInput, match="limit"):
        import io

        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.zeros(32000, dtype=np.float32), 16000, format="WAV")
        audio.embed("audio", [buf.getvalue()])
