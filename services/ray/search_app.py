"""The sharded search application: ``shards`` SearchShard deployments (one data directory
each) bound into a SearchRouter ingress."""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from synesthesia.services.ray.args import AppArgs


def build_search_app(args: AppArgs) -> Application:
    from synesthesia.services.ray.search_router import SearchRouter
    from synesthesia.services.ray.search_shard import SearchShard

    opts = args.search
    # One replica per shard: a shard owns its data directory (scale out with more shards).
    shard_options: dict[str, Any] = {
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": opts.shard_num_cpus},
        "max_ongoing_requests": 64,
    }
    shards = [
        SearchShard.options(name=f"SearchShard{i}", **shard_options).bind(
            i, opts.model_dump(mode="json")
        )
        for i in range(opts.shards)
    ]
    router_options: dict[str, Any] = {"name": "SearchRouter", **args.scaling.deployment_options()}
    return SearchRouter.options(**router_options).bind(
        shards, dict(opts.encoder_apps), opts.max_items_per_request
    )
