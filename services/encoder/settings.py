"""Settings of one standalone encoder service: the encoder's config (config.py) plus where and how
the server runs, from the environment (prefix ``SYNESTHESIA_``) or flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from synesthesia.modality import Modality
from synesthesia.services.encoder.config import EncoderConfig
from synesthesia.serving.security import SecuritySettings

DEFAULT_PORTS = {Modality.TEXT: 50051, Modality.IMAGE: 50052, Modality.AUDIO: 50053}


class EncoderSettings(BaseSettings, EncoderConfig, SecuritySettings):
    model_config = SettingsConfigDict(env_prefix="SYNESTHESIA_", extra="ignore")

    modality: Modality = Modality.TEXT
    host: str = "127.0.0.1"
    port: int | None = Field(None, description="default: 50051 text, 50052 image, 50053 audio")
    max_in_flight: int = Field(
        32,
        ge=1,
        description="RPCs admitted at once (one full batch of single-item calls); more: "
        "RESOURCE_EXHAUSTED (load shedding)",
    )
    metrics_port: int | None = Field(None, description="Prometheus /metrics port; unset: off")
    grace_seconds: float = Field(10.0, ge=0, description="drain time on SIGTERM")
    log_level: str = "INFO"

    def resolved_port(self) -> int:
        return DEFAULT_PORTS[self.modality] if self.port is None else self.port

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(**{k: getattr(self, k) for k in EncoderConfig.model_fields})
