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
        SearchShard.options(
            name=f"SearchShard{i}", **_pinned(shard_options, i, opts.pin_shards)
        ).bind(i, opts.model_dump(mode="json"))
        for i in range(opts.shards)
    ]
    router_options: dict[str, Any] = {"name": "SearchRouter", **args.scaling.deployment_options()}
    return SearchRouter.options(**router_options).bind(
        shards,
        dict(opts.encoder_apps),
        opts.max_items_per_request,
        None if args.tokens_file is None else str(args.tokens_file),
        opts.shard_timeout_s,
    )


def shard_resource(index: int) -> str:
    return f"synesthesia_shard_{index}"


def _pinned(options: dict[str, Any], index: int, pin: bool) -> dict[str, Any]:
    """Shard ``index`` needs one unit of its own custom resource when pinned, so Ray places it
    only on the node (pod) that owns its volume."""
    if not pin:
        return options
    actor = {**options["ray_actor_options"], "resources": {shard_resource(index): 1}}
    return {**options, "ray_actor_options": actor}
