"""Typed arguments of the Ray Serve application builder (``build_app``), as read from the
``args:`` of an application in a Serve config YAML. Deployment settings given in the YAML
(``deployments:``) override the defaults derived here, as usual in Ray Serve."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from synesthesia.media.audio import DEFAULT_MAX_SECONDS
from synesthesia.media.image import DEFAULT_MAX_PIXELS
from synesthesia.media.text import DEFAULT_MAX_TEXT_BYTES
from synesthesia.serving.server import DEFAULT_MAX_MESSAGE_BYTES

ServiceName = Literal["text", "image", "audio", "search"]


class Scaling(BaseModel):
    """Replica resources and Ray Serve autoscaling of one deployment."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(
        default=0.5, gt=0, description="Ray CPUs reserved per replica (fractional)"
    )
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="per replica, scale above it"
    )
    upscale_delay_s: float = Field(default=3.0, ge=0)
    downscale_delay_s: float = Field(default=30.0, ge=0)
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="queued per replica before routing"
    )

    def deployment_options(self) -> dict[str, object]:
        return {
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "max_replicas": max(self.max_replicas, self.min_replicas, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            },
        }


class EncoderOptions(BaseModel):
    """What an encoder replica loads and how it batches (the Ray twin of EncoderSettings)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "synesthesia-minilm"
    checkpoint: str | None = Field(
        default=None, description="local weights path (never downloaded)"
    )
    max_batch_size: int = Field(default=32, ge=1, description="model rows per forward pass")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="how long a batch fills up"
    )
    max_items_per_request: int = Field(default=512, ge=1)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    max_image_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    max_audio_seconds: float = Field(default=DEFAULT_MAX_SECONDS, gt=0)
    max_text_bytes: int = Field(default=DEFAULT_MAX_TEXT_BYTES, ge=1)
    torch_threads: int = Field(default=1, ge=1, description="torch threads per replica")


class SearchOptions(BaseModel):
    """The sharded search service: N shard deployments, each with its own data directory."""

    model_config = ConfigDict(extra="forbid")

    shards: int = Field(default=3, ge=1, le=64)
    data_dir: Path = Field(
        default=Path("data/ray-index"), description="shard i uses data_dir/shard-i"
    )
    max_items_per_request: int = Field(default=1024, ge=1)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    snapshot_interval_s: float = Field(
        default=60.0, gt=0, description="snapshot changed collections"
    )
    encoder_apps: dict[str, str] = Field(
        default_factory=lambda: {"text": "text", "image": "image", "audio": "audio"},
        description="modality -> name of the Ray Serve application hosting its encoder",
    )
    shard_num_cpus: float = Field(
        default=0.25,
        gt=0,
        description="per shard; a shard is ONE replica (it owns its data directory)",
    )


class AppArgs(BaseModel):
    """``args:`` of one application. ``service`` picks what the application hosts."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName = "text"
    encoder: EncoderOptions = Field(default_factory=lambda: EncoderOptions())
    search: SearchOptions = Field(default_factory=lambda: SearchOptions())
    scaling: Scaling = Field(default_factory=lambda: Scaling())
