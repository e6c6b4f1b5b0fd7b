"""Start the real ``ihe-engine serve`` in a subprocess and read its listening lines (for integration tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineProcess", "start_engine"]


@dataclass
class EngineProcess:
    process: subprocess.Popen
    endpoints: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return self.endpoints[name]

    def host_port(self, name: str) -> tuple[str, int]:
        address = self.endpoints[name].split("://", 1)[1].split("/", 1)[0]
        host, port = address.rsplit(":", 1)
        return host.strip("[]"), int(port)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_engine(data_dir: Path, *extra: str, timeout: float = 60.0) -> EngineProcess:
    args = [sys.executable, "-m", "ihe_engine.cli", "serve", "--data-dir", str(data_dir), "--http-port", "0",
            "--mllp-port", "0", "--audit-tcp-port", "0", "--audit-udp-port", "0", *extra]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    engine = EngineProcess(process)
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            engine.output.append(line.rstrip("\n"))
            if line.startswith("listening "):
                _, name, url = line.split()
                engine.endpoints[name] = url
            elif line.strip() == "ready":
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or process.poll() is not None:
        process.kill()
        raise RuntimeError("engine did not become ready:\n" + "\n".join(engine.output))
    return engine
