"""Settings of one encoder service, from the environment (prefix ``SYNESTHESIA_``) or flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from synesthesia.media.audio import DEFAULT_MAX_SECONDS
from synesthesia.media.image import DEFAULT_MAX_PIXELS
from synesthesia.media.text import DEFAULT_MAX_TEXT_BYTES
from synesthesia.modality import Modality
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_PORTS = {Modality.TEXT: 50051, Modality.IMAGE: 50052, Modality.AUDIO: 50053}


class EncoderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNESTHESIA_", extra="ignore")

    modality: Modality = Modality.TEXT
    host: str = "127.0.0.1"
    port: int | None = Field(None, description="default: 50051 text, 50052 image, 50053 audio")
    model: str = "synesthesia-minilm"
    checkpoint: str | None = Field(None, description="local weights path (never downloaded)")
    max_batch_size: int = Field(32, ge=1, description="rows per model forward pass")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill up")
    max_items_per_request: int = Field(512, ge=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_audio_seconds: float = Field(DEFAULT_MAX_SECONDS, gt=0)
    max_text_bytes: int = Field(DEFAULT_MAX_TEXT_BYTES, ge=1)
    torch_threads: int = Field(0, ge=0, description="0: let torch decide")
    prepare_threads: int = Field(2, ge=1, description="threads decoding media")
    metrics_port: int | None = Field(None, description="Prometheus /metrics port; unset: off")
    grace_seconds: float = Field(10.0, ge=0, description="drain time on SIGTERM")
    log_level: str = "INFO"

    def resolved_port(self) -> int:
        return DEFAULT_PORTS[self.modality] if self.port is None else self.port
