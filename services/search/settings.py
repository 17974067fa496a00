"""Settings of the search service, from the environment (prefix ``SYNESTHESIA_``) or flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from synesthesia.serving.security import SecuritySettings
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES


class SearchSettings(BaseSettings, SecuritySettings):
    model_config = SettingsConfigDict(env_prefix="SYNESTHESIA_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50054
    data_dir: Path = Field(Path("data/index"), description="SQLite + snapshots live here")
    text_encoder: str = Field("127.0.0.1:50051", description="host:port; empty = not configured")
    image_encoder: str = "127.0.0.1:50052"
    audio_encoder: str = "127.0.0.1:50053"
    encoder_tls_ca: Path | None = Field(
        default=None, description="PEM CA bundle: call the encoders over TLS, trusting it"
    )
    encoder_tls_cert: Path | None = Field(
        default=None, description="client certificate for the encoders (mTLS)"
    )
    encoder_tls_key: Path | None = Field(default=None, description="key of encoder_tls_cert")
    encoder_token: SecretStr | None = Field(
        default=None, description="bearer token the search service presents to the encoders"
    )
    encoder_timeout_s: float = Field(30.0, gt=0, description="per call, capped by the deadline")
    encoder_retries: int = Field(2, ge=0, description="extra attempts on UNAVAILABLE")
    snapshot_interval_s: float = Field(60.0, gt=0, description="snapshot changed collections")
    max_items_per_request: int = Field(1024, ge=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL)$")
    max_in_flight: int = Field(
        256, ge=1, description="RPCs admitted at once; more: RESOURCE_EXHAUSTED (load shedding)"
    )
    metrics_port: int | None = None
    grace_seconds: float = Field(10.0, ge=0)
    log_level: str = "INFO"
