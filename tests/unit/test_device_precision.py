"""Device and precision settings (synesthesia.models.device, EncoderConfig): resolved and refused
at start-up, honoured by both families (inputs moved and cast, vectors float32 unit-norm on the
CPU). GPU paths are checked on the CPU with torch.cuda monkeypatched and a spy model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from synesthesia.errors import FailedPrecondition
from synesthesia.modality import Modality
from synesthesia.models import create_model
from synesthesia.models.device import resolve_device, resolve_precision
from synesthesia.models.embedder import Prepared
from synesthesia.services.encoder.config import EncoderConfig, load_embedder
from synesthesia.services.encoder.settings import EncoderSettings
from synesthesia.services.encoder.warmup import warmup_item
from torch import nn

from tests.unit.test_imagebind_model import golden_dir

torch.set_num_threads(2)


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_picks_cuda_only_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(FailedPrecondition, match="torch sees 2 GPU"):
        resolve_device("cuda:2")


def test_unknown_or_absent_devices_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    with pytest.raises(FailedPrecondition, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(FailedPrecondition, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_precisions_and_fp16_refused_on_cpu() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cpu) is torch.float32
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("fp16", gpu) is torch.float16
    with pytest.raises(FailedPrecondition, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(FailedPrecondition, match="unknown precision"):
        resolve_precision("int4", cpu)


def test_bf16_on_a_cpu_without_bf16_instructions_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from synesthesia.models import device

    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma{}\nbugs\t\t: \n"
    cases = {
        "avx2": (x86.format(""), False),
        "avx512": (x86.format(" avx512f avx512_bf16"), True),
        "amx": (x86.format(" amx_tile amx_bf16"), True),
        "arm": ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        "arm-old": ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        "no-flags": ("processor\t: 0\n", None),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert device.cpu_has_bf16(tmp_path / name) is want, name
    assert device.cpu_has_bf16(tmp_path / "absent") is None

    cpu = torch.device("cpu")
    for has, warned in ((False, True), (True, False), (None, False)):
        monkeypatch.setattr(device, "cpu_has_bf16", lambda has=has: has)
        caplog.clear()
        with caplog.at_level("WARNING", logger="synesthesia.models.device"):
            assert resolve_precision("bf16", cpu) is torch.bfloat16
            assert resolve_precision("fp32", cpu) is torch.float32
        found = [r.getMessage() for r in caplog.records]
        assert bool(found) is warned, (has, found)
        if warned:
            assert len(found) == 1 and "without bf16 instructions" in found[0]
            assert "use precision fp32" in found[0]


def test_encoder_config_reads_and_checks_device_and_precision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNESTHESIA_DEVICE", "auto")
    monkeypatch.setenv("SYNESTHESIA_PRECISION", "bf16")
    config = EncoderSettings().encoder_config()
    assert (config.device, config.precision) == ("auto", "bf16")
    assert EncoderConfig().device == "cpu" and EncoderConfig().precision == "fp32"
    for bad in ({"device": "gpu"}, {"precision": "fp8"}, {"precision": "fp16"}):
        with pytest.raises(ValidationError):
            EncoderConfig(**bad)  # type: ignore[arg-type]
    fake_gpus(monkeypatch, 0)
    with pytest.raises(FailedPrecondition, match="no CUDA GPU"):  # at start-up, before loading
        load_embedder(EncoderConfig(device="cuda"), Modality.TEXT)
    with pytest.raises(FailedPrecondition, match="fp16"):  # auto fell back to the CPU
        load_embedder(EncoderConfig(device="auto", precision="fp16"), Modality.TEXT)


def test_load_embedder_builds_the_configured_precision() -> None:
    config = EncoderConfig(model="imagebind-test", device="auto", precision="bf16")
    emb = load_embedder(config, Modality.IMAGE)
    assert {p.dtype for p in emb.model.parameters()} == {torch.bfloat16}  # type: ignore[attr-defined]
    vecs = emb.embed(Modality.IMAGE, [warmup_item(Modality.IMAGE)])
    assert vecs.dtype == np.float32 and abs(float(np.linalg.norm(vecs[0])) - 1.0) < 1e-6


class Spy(nn.Module):
    """Stands in for a model on another device: records what it is given, answers in bf16."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim, self.seen = dim, []  # type: ignore[var-annotated]

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.seen.append([(a.device, a.dtype) for a in args if isinstance(a, torch.Tensor)])
        n = next(a for a in args if isinstance(a, torch.Tensor)).shape[0]
        return torch.full((n, self.dim), 3.0, dtype=torch.bfloat16)


def test_imagebind_moves_and_casts_inputs_and_returns_float32_on_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emb = create_model("imagebind-test", modalities=["image", "text"], precision="bf16")
    assert {p.dtype for p in emb.model.parameters()} == {torch.bfloat16}
    spy = Spy(emb.info().dim)
    spy.config = emb.model.config  # type: ignore[assignment]
    spy.forward = lambda tower, x: Spy.forward(spy, x)  # type: ignore[method-assign]
    monkeypatch.setattr(emb, "model", spy)
    moved: list[tuple[torch.device | str, torch.dtype | None]] = []
    real_to = torch.Tensor.to

    def to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        moved.append((args[0], args[1] if len(args) > 1 else None))  # type: ignore[arg-type]
        return real_to(self, "cpu", *args[1:2])  # type: ignore[call-overload,no-any-return]

    emb.device = torch.device("cuda", 0)  # as if built on a GPU
    monkeypatch.setattr(torch.Tensor, "to", to)
    image = emb.encode("image", [Prepared(inputs={"x": torch.zeros(3, 224, 224)})])
    text = emb.encode("text", [Prepared(inputs={"x": torch.zeros(77, dtype=torch.long)})])
    monkeypatch.undo()
    assert [s[0] for s in spy.seen] == [
        (torch.device("cpu"), torch.bfloat16),
        (torch.device("cpu"), torch.long),
    ]
    assert moved[0] == (torch.device("cuda", 0), torch.bfloat16)  # floats cast
    assert moved[1] == (torch.device("cuda", 0), torch.long)  # token ids stay integers
    for out in (image, text):
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_imagebind_bf16_is_close_to_fp32_on_golden_inputs() -> None:
    golden = golden_dir() / "imagebind_a"
    inputs = np.load(golden / "model_inputs.npz")
    kw = {"checkpoint": golden / "weights.pth", "config": golden / "config.json"}
    fp32, bf16 = (
        create_model("imagebind-test", **kw),
        create_model("imagebind-test", precision="bf16", **kw),
    )
    for modality, key in (("text", "text_real"), ("image", "vision_real"), ("audio", "audio_real")):
        prepared = [Prepared(inputs={"x": torch.from_numpy(r)}) for r in inputs[key]]
        a, b = fp32.encode(modality, prepared), bf16.encode(modality, prepared)
        assert b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
        assert cosines(a, b).min() >= 0.999, modality


@pytest.mark.parametrize("modality", list(Modality))
def test_minilm_bf16_is_float32_unit_norm_and_close_to_fp32(modality: Modality) -> None:
    from tests.unit.test_onnx_export import golden_media

    items = [m for m in golden_media(modality) if m != ""][:4]
    fp32 = create_model("synesthesia-minilm", modalities=[modality])
    bf16 = create_model("synesthesia-minilm", modalities=[modality], precision="bf16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    a, b = fp32.embed(modality, items), bf16.embed(modality, items)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    assert cosines(a, b).min() >= 0.99  # measured per item in bench/bench_precision.py


@pytest.mark.parametrize("modality", list(Modality))
def test_eval_in_bf16_computes_what_the_bf16_service_serves(modality: Modality) -> None:
    """``synesthesia eval --precision bf16`` wraps the towers like the serving path: the same
    vectors as a bf16 encoder's, from the same inputs."""
    from synesthesia.models.minilm.weights import default_weights_path, load_model
    from synesthesia.train.evaluate import InPrecision

    from tests.unit.test_onnx_export import golden_media

    items = [m for m in golden_media(modality) if m != ""][:3]
    served = create_model("synesthesia-minilm", modalities=[modality], precision="bf16")
    prepared = [served.prepare(modality, x) for x in items]
    model = InPrecision(load_model(default_weights_path())[0], torch.bfloat16)
    with torch.inference_mode():
        if modality is Modality.TEXT:
            ids = torch.nn.utils.rnn.pad_sequence([p.inputs["ids"] for p in prepared], True)
            valid = torch.zeros_like(ids, dtype=torch.bool)
            for i, p in enumerate(prepared):
                valid[i, : len(p.inputs["ids"])] = True
            got = model.encode_text(ids, valid)
        elif modality is Modality.IMAGE:
            got = model.encode_image(torch.stack([p.inputs["pixels"] for p in prepared]))
        else:
            got = torch.stack(
                [
                    torch.nn.functional.normalize(
                        model.encode_audio(p.inputs["fbank"], p.inputs["frames"]).mean(0), dim=-1
                    )
                    for p in prepared
                ]
            )
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), served.encode(modality, prepared), atol=2e-3)
