"""Build and run the search service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from synesthesia.index import IndexManager
from synesthesia.modality import Modality
from synesthesia.services.search.encoders import EncoderGateway
from synesthesia.services.search.flow import SearchFlow
from synesthesia.services.search.servicer import SearchServicer
from synesthesia.services.search.settings import SearchSettings
from synesthesia.services.search.store import LocalStore
from synesthesia.serving.context import configure_logging
from synesthesia.serving.metrics import start_metrics_server
from synesthesia.serving.security import channel_credentials
from synesthesia.serving.server import RunningServer, ServiceSpec, build_server, serve_forever
from synesthesia.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


class SearchApp:
    """The running service: server, the flow over a local store and the encoders' gateway, the
    index manager and the periodic snapshot task."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.server: RunningServer | None = None
        self.gateway: EncoderGateway | None = None
        self.store: LocalStore | None = None
        self.manager: IndexManager | None = None
        self._snapshots: asyncio.Task[None] | None = None

    async def start(self) -> RunningServer:
        s = self.settings
        loop = asyncio.get_running_loop()
        # Opening replays what the snapshots do not cover; only then is the service SERVING.
        self.manager = await loop.run_in_executor(
            None, lambda: IndexManager(s.data_dir, synchronous=s.sqlite_synchronous)
        )
        self.gateway = EncoderGateway(
            {
                Modality.TEXT: s.text_encoder,
                Modality.IMAGE: s.image_encoder,
                Modality.AUDIO: s.audio_encoder,
            },
            s.encoder_timeout_s,
            s.encoder_retries,
            s.max_message_bytes,
            channel_credentials(s.encoder_tls_ca, s.encoder_tls_cert, s.encoder_tls_key),
            s.encoder_token.get_secret_value() if s.encoder_token else None,
        )
        self.store = LocalStore(self.manager)
        flow = SearchFlow(self.store, self.gateway, s.max_items_per_request)
        self.server = await build_server(
            [
                ServiceSpec(
                    SearchServicer(flow),
                    search_pb2_grpc.add_SearchServiceServicer_to_server,
                    SERVICE_NAME,
                )
            ],
            host=s.host,
            port=s.port,
            max_message_bytes=s.max_message_bytes,
            security=s,
            max_in_flight=s.max_in_flight,
        )
        await self.server.set_serving(True)
        self._snapshots = loop.create_task(self._snapshot_loop())
        log.info("search SERVING on port %d (data in %s)", self.server.port, s.data_dir)
        return self.server

    async def _snapshot_loop(self) -> None:
        assert self.manager is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.snapshot_interval_s)
            try:
                await loop.run_in_executor(None, self.manager.snapshot_all)
            except Exception:
                log.exception("periodic snapshot failed")

    async def stop(self, grace: float | None = None) -> None:
        if self._snapshots is not None:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
        if self.server is not None:
            await self.server.stop(self.settings.grace_seconds if grace is None else grace)
        if self.gateway is not None:
            await self.gateway.close()
        if self.store is not None:
            self.store.close()
        if self.manager is not None:
            self.manager.close(snapshot=True)


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="synesthesia serve search")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = SearchSettings(**overrides)
    configure_logging(settings.log_level)
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port, settings.host)
    app = SearchApp(settings)

    async def on_stop() -> None:
        await app.stop(0)

    asyncio.run(serve_forever(app.start, settings.grace_seconds, on_stop))
    return 0
