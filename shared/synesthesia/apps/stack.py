"""The local stack as plain processes on loopback: start services, wait until each reports
SERVING through grpc.health.v1, stop them all (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from synesthesia.health import wait_for_serving

log = logging.getLogger(__name__)


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LocalStack:
    """``with LocalStack(log_dir=...) as stack: stack.add("text", 50051) ...``"""

    log_dir: Path
    host: str = "127.0.0.1"
    services: list[ServiceProcess] = field(default_factory=list)

    def add(self, name: str, port: int, **env: str) -> ServiceProcess:
        svc = ServiceProcess(name, port, {k.upper(): str(v) for k, v in env.items()})
        self.services.append(svc)
        return svc

    def start(self, timeout: float = 180.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for svc in self.services:
            env = {
                **os.environ,
                **svc.env,
                "SYNESTHESIA_HOST": self.host,
                "SYNESTHESIA_PORT": str(svc.port),
            }
            logfile = open(self.log_dir / f"{svc.name}.log", "ab")  # noqa: SIM115 - lives with proc
            svc.proc = subprocess.Popen(
                [sys.executable, "-m", f"synesthesia.services.{svc.name}"],
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        for svc in self.services:
            start = time.monotonic()
            try:
                wait_for_serving(svc.target, timeout=timeout)
            except TimeoutError:
                self.stop()
                tail = (self.log_dir / f"{svc.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"{svc.name} did not start; its log ends with:\n{tail}"
                ) from None
            log.info("%s SERVING on %s (%.1f s)", svc.name, svc.target, time.monotonic() - start)

    def stop(self, grace: float = 10.0) -> None:
        for svc in self.services:
            if svc.proc and svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for svc in self.services:
            if svc.proc is None:
                continue
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
