"""Typed arguments of the Ray Serve application builder (``build_app``), as read from the
``args:`` of an application in a Serve config YAML. Deployment settings given in the YAML
(``deployments:``) override the defaults derived here, as usual in Ray Serve. The encoder's
part is the same EncoderConfig that ``synesthesia serve`` reads from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from synesthesia.services.encoder.config import EncoderConfig

ServiceName = Literal["text", "image", "audio", "search"]


class Scaling(BaseModel):
    """Replica resources and Ray Serve autoscaling of one deployment."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(
        default=0.5, gt=0, description="Ray CPUs reserved per replica (fractional)"
    )
    num_gpus: float = Field(
        default=0,
        ge=0,
        description="Ray GPUs per replica (fractional shares one GPU); > 0 makes the encoder's "
        "device default to cuda, the GPU Ray assigned to the replica",
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
        actor: dict[str, float] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        return {
            "ray_actor_options": actor,
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
    shard_timeout_s: float = Field(
        default=30.0, gt=0, description="longest wait for one shard's answer (UNAVAILABLE past it)"
    )
    pin_shards: bool = Field(
        default=False,
        description="shard i runs only on a Ray node offering the custom resource "
        "synesthesia_shard_<i> (the chart gives each shard its own worker group and "
        "ReadWriteOnce volume)",
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
    encoder: EncoderConfig = Field(default_factory=lambda: EncoderConfig())
    search: SearchOptions = Field(default_factory=lambda: SearchOptions())
    scaling: Scaling = Field(default_factory=lambda: Scaling())
    tokens_file: Path | None = Field(
        default=None,
        description="hashed bearer tokens checked on calls through Ray's gRPC proxy "
        "(the format of SYNESTHESIA_TOKENS_FILE)",
    )
