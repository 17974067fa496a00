"""The imagebind family behind the encoder services, end to end over gRPC, with a synthetic
checkpoint in the official format (the golden set's small random weights), loaded both from the
.pth and from a folder written by `synesthesia convert imagebind`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synesthesia.apps.cli import main as cli_main
from synesthesia.client import EncoderClient
from synesthesia.modality import Modality
from synesthesia.models import create_model
from synesthesia.services.encoder.app import start_encoder
from synesthesia.services.encoder.settings import EncoderSettings

from tests import media_factory as mf
from tests.servers import running

ITEMS = {
    Modality.TEXT: ["a dog barking", "rain on a roof"],
    Modality.IMAGE: [mf.png((300, 200), seed=1), mf.png((224, 224), seed=2)],
    Modality.AUDIO: [mf.wav(3.0, sr=44_100), mf.wav(7.5, freq_hz=880)],
}


@pytest.fixture(scope="module")
def checkpoints(golden_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pth = golden_dir / "imagebind_a" / "weights.pth"
    out = tmp_path_factory.mktemp("converted")
    assert cli_main(["convert", "imagebind", str(pth), str(out)]) == 0
    assert {p.name for p in out.glob("*.safetensors")} >= {
        "vision.safetensors",
        "text.safetensors",
        "audio.safetensors",
    }
    return {"pth": pth, "converted": out}


@pytest.mark.parametrize("source", ["pth", "converted"])
@pytest.mark.parametrize("modality", list(Modality))
def test_imagebind_over_grpc_equals_in_process(
    checkpoints: dict[str, Path], source: str, modality: Modality
) -> None:
    checkpoint = str(checkpoints[source])
    settings = EncoderSettings(
        modality=modality, port=0, model="imagebind-test", checkpoint=checkpoint
    )
    reference = create_model(
        "imagebind-test", checkpoint=str(checkpoints["pth"]), modalities=[modality]
    ).embed(modality, ITEMS[modality])
    with (
        running(lambda: start_encoder(settings)) as (server, _),
        EncoderClient(f"127.0.0.1:{server.port}") as client,
    ):
        info = client.info()
        assert info.model_id.startswith("imagebind-test") and info.dim == 32
        vectors = client.embed(modality, ITEMS[modality])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
