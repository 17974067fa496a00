"""Kill a search server with SIGKILL while it receives a streaming upsert, restart it, and check
that every acknowledged item survived with an identical vector and metadata. Used by
tests/services/test_search_crash.py (5 kills) and bench/bench_search_crash.py (20)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2
from synesthesia.health import wait_for_serving
from synesthesia.v1 import common_pb2, search_pb2, search_pb2_grpc

from tests.servers import unused_port

DIM = 32


def vector_for(item_id: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(item_id.encode()))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def metadata_for(item_id: str) -> dict[str, object]:
    return {
        "id_copy": item_id,
        "n": float(zlib.crc32(item_id.encode()) % 1000),
        "even": len(item_id) % 2 == 0,
    }


@dataclass
class CrashReport:
    kills: int = 0
    acknowledged: int = 0
    verified: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def _start(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {
        **os.environ,
        "SYNESTHESIA_PORT": str(port),
        "SYNESTHESIA_DATA_DIR": str(data_dir),
        "SYNESTHESIA_TEXT_ENCODER": "",
        "SYNESTHESIA_IMAGE_ENCODER": "",
        "SYNESTHESIA_AUDIO_ENCODER": "",
        "SYNESTHESIA_SNAPSHOT_INTERVAL_S": "0.7",
        "SYNESTHESIA_LOG_LEVEL": "WARNING",
    }
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "synesthesia.services.search"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_serving(f"127.0.0.1:{port}", timeout=120)
    return proc, time.monotonic() - t0


def _verify(stub: search_pb2_grpc.SearchServiceStub, acked: list[str], report: CrashReport) -> None:
    for start in range(0, len(acked), 500):
        ids = acked[start : start + 500]
        got = {
            i.id: i
            for i in stub.Get(search_pb2.GetRequest(collection="crash", ids=ids), timeout=60).items
        }
        for item_id in ids:
            item = got.get(item_id)
            if item is None:
                report.lost.append(item_id)
            elif np.asarray(item.vector, dtype=np.float32).tobytes() != vector_for(
                item_id
            ).tobytes() or json_format.MessageToDict(item.metadata) != metadata_for(item_id):
                report.mismatched.append(item_id)
            else:
                report.verified += 1
    if acked:
        hits = stub.Query(
            search_pb2.QueryRequest(
                collection="crash",
                vector=search_pb2.Vector(values=vector_for(acked[-1]).tolist()),
                k=1,
            ),
            timeout=30,
        ).hits
        if not hits or hits[0].id != acked[-1]:
            report.mismatched.append(f"query for {acked[-1]} returned {[h.id for h in hits]}")


def run(data_dir: Path, kills: int, seed: int = 0, chunk: int = 25) -> CrashReport:
    rng = random.Random(seed)
    port = unused_port()
    report = CrashReport()
    acked: list[str] = []
    for round_no in range(kills + 1):
        proc, took = _start(data_dir, port)
        report.restart_seconds.append(took)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = search_pb2_grpc.SearchServiceStub(channel)
                if round_no == 0:
                    stub.CreateCollection(
                        search_pb2.CreateCollectionRequest(
                            config=search_pb2.CollectionConfig(
                                name="crash", dim=DIM, index_kind=search_pb2.INDEX_KIND_HNSW
                            )
                        )
                    )
                _verify(stub, acked, report)
                if round_no == kills:
                    break

                def requests(r: int = round_no):  # type: ignore[no-untyped-def]
                    for c in range(10_000):
                        items = []
                        for j in range(chunk):
                            item_id = f"r{r}-c{c}-{j}"
                            meta = struct_pb2.Struct()
                            meta.update(metadata_for(item_id))
                            items.append(
                                search_pb2.UpsertItem(
                                    id=item_id,
                                    modality=common_pb2.MODALITY_IMAGE,
                                    metadata=meta,
                                    vector=search_pb2.Vector(values=vector_for(item_id).tolist()),
                                )
                            )
                        yield search_pb2.UpsertStreamRequest(collection="crash", items=items)

                def consume(stub: search_pb2_grpc.SearchServiceStub = stub) -> None:
                    try:
                        for ack in stub.UpsertStream(requests(), timeout=120):
                            acked.extend(ack.ids)  # acknowledged = committed
                    except grpc.RpcError:
                        pass  # the kill

                worker = threading.Thread(target=consume)
                worker.start()
                time.sleep(rng.uniform(0.3, 2.0))
                proc.kill()  # SIGKILL
                proc.wait()
                report.kills += 1
                worker.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report.acknowledged = len(acked)
    return report
