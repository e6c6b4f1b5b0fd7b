"""``ihe-engine serve``: bind the listeners once, then serve them from one or several worker processes.

The parent binds every socket (so port 0 resolves to one real port shared by all workers), upgrades the schema,
prints one ``listening NAME URL`` line per endpoint, and either serves in-process (``--workers 1``) or starts N
workers that adopt the same sockets: the kernel spreads connections and datagrams over them. ``ready`` is
printed once every worker serves. SIGTERM stops listening, lets in-flight work finish (or roll back), and exits.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Settings
from .errors import ConfigurationError

__all__ = ["BoundSocket", "bind_sockets", "listening_lines", "serve", "worker_main"]

log = logging.getLogger("ihe_engine.server")

HTTP_PATHS = (("xds-registry", "/xds/registry"), ("xds-repository", "/xds/repository"),
              ("pix", "/pix"), ("pdq", "/pdq"), ("metrics", "/metrics"), ("health", "/health"))
WORKER_READY = b"ready\n"


@dataclass(frozen=True, kw_only=True)
class BoundSocket:
    name: str
    kind: str  # "stream" or "datagram"
    sock: socket.socket

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    @property
    def family(self) -> int:
        return self.sock.family


def _bind(host: str, port: int, kind: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock_type = socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM
    sock = socket.socket(family, sock_type)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot bind {kind} {host}:{port}: {exc.strerror}") from None
    if kind == "stream":
        sock.listen(1024)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def bind_sockets(settings: Settings) -> list[BoundSocket]:
    wanted = (("http", "stream", settings.http_port), ("mllp", "stream", settings.mllp_port),
              ("audit-tcp", "stream", settings.audit_tcp_port), ("audit-udp", "datagram", settings.audit_udp_port))
    bound: list[BoundSocket] = []
    try:
        for name, kind, port in wanted:
            bound.append(BoundSocket(name=name, kind=kind, sock=_bind(settings.host, port, kind)))
    except BaseException:
        for item in bound:
            item.sock.close()
        raise
    return bound


def listening_lines(settings: Settings, sockets: list[BoundSocket]) -> list[str]:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    secure = settings.tls_enabled
    by_name = {item.name: item for item in sockets}
    http = f"{'https' if secure else 'http'}://{host}:{by_name['http'].port}"
    lines = [f"listening {name} {http}{path}" for name, path in HTTP_PATHS]
    lines.append(f"listening mllp {'mllps' if secure else 'mllp'}://{host}:{by_name['mllp'].port}")
    lines.append(f"listening audit-{'tls' if secure else 'tcp'} "
                 f"syslog+{'tls' if secure else 'tcp'}://{host}:{by_name['audit-tcp'].port}")
    lines.append(f"listening audit-udp syslog+udp://{host}:{by_name['audit-udp'].port}")
    return lines


def _prepare_data_dir(settings: Settings) -> None:
    for path in (settings.data_dir, settings.blob_dir, settings.spool_dir):
        path.mkdir(parents=True, exist_ok=True)


def _upgrade_schema(settings: Settings) -> None:
    from .storage import Database

    db = Database(settings.database_url)
    try:
        db.upgrade()
    finally:
        db.dispose()


def serve(settings: Settings) -> int:
    _prepare_data_dir(settings)
    _upgrade_schema(settings)
    sockets = bind_sockets(settings)
    for line in listening_lines(settings, sockets):
        print(line, flush=True)
    if settings.workers == 1:
        return _serve_in_process(settings, sockets, announce_ready=True)
    return _supervise_workers(settings, sockets)


def _serve_in_process(settings: Settings, sockets: list[BoundSocket], *, announce_ready: bool,
                      ready_fd: int | None = None) -> int:
    from twisted.internet import reactor

    from .bootstrap import build_runtime, start_listeners

    runtime = build_runtime(settings, reactor)
    ports = start_listeners(runtime, sockets)
    for item in sockets:
        item.sock.close()  # the reactor holds its own duplicate of each descriptor

    def _ready() -> None:
        if announce_ready:
            print("ready", flush=True)
        if ready_fd is not None:
            os.write(ready_fd, WORKER_READY)
            os.close(ready_fd)
        log.info("serving with pid %d", os.getpid())

    reactor.callWhenRunning(_ready)
    reactor.addSystemEventTrigger("before", "shutdown", _stop_listening, ports, runtime)
    reactor.run()
    return 0


def _stop_listening(ports: list, runtime) -> object:  # type: ignore[no-untyped-def]
    """Refuse new connections, then wait for in-flight work so its answers go out before connections drop."""
    from twisted.internet.defer import DeferredList, maybeDeferred

    log.info("stopping: no new connections; %d blocking tasks in flight", runtime.in_flight)
    stopped = DeferredList([maybeDeferred(port.stopListening) for port in ports], consumeErrors=True)

    def drained(left: int) -> None:
        if left:
            log.warning("stopping with %d tasks still running; their transactions roll back", left)
        else:
            log.info("in-flight work finished")

    return stopped.addCallback(lambda _: runtime.drain()).addCallback(drained)


# ---------------------------------------------------------------------------------------------------------------
# Several workers


def _settings_to_env(settings: Settings) -> str:
    data = asdict(settings)
    return json.dumps({key: (str(value) if isinstance(value, Path) else value) for key, value in data.items()})


def _settings_from_env(text: str) -> Settings:
    from .config import _coerce

    return Settings(**_coerce(json.loads(text)))


def _metrics_dir(settings: Settings) -> Path:
    path = settings.data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _start_worker(settings: Settings, sockets: list[BoundSocket], metrics_dir: Path, index: int
                  ) -> tuple[subprocess.Popen, int]:
    read_fd, write_fd = os.pipe()
    fd_spec = ",".join(f"{item.name}={item.sock.fileno()}" for item in sockets)
    env = dict(os.environ, IHE_ENGINE_SETTINGS=_settings_to_env(settings), IHE_ENGINE_FDS=fd_spec,
               IHE_ENGINE_READY_FD=str(write_fd), IHE_ENGINE_WORKER=str(index),
               PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    process = subprocess.Popen([sys.executable, "-m", "ihe_engine.server"], env=env,
                               pass_fds=[item.sock.fileno() for item in sockets] + [write_fd])
    os.close(write_fd)
    return process, read_fd


def _wait_ready(read_fd: int, process: subprocess.Popen) -> None:
    """Block until the worker writes its ready line, or fail when it exits first (EOF on the pipe)."""
    with os.fdopen(read_fd, "rb") as pipe:
        if pipe.read(len(WORKER_READY)) != WORKER_READY:
            raise RuntimeError(f"worker {process.pid} exited before it was ready (code {process.poll()})")


def _supervise_workers(settings: Settings, sockets: list[BoundSocket]) -> int:
    metrics_dir = _metrics_dir(settings)
    stopping = False
    workers: dict[int, subprocess.Popen] = {}

    def _on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    for index in range(settings.workers):
        process, read_fd = _start_worker(settings, sockets, metrics_dir, index)
        workers[index] = process
        _wait_ready(read_fd, process)
    print("ready", flush=True)
    return _watch_workers(settings, sockets, metrics_dir, workers, lambda: stopping)


def _watch_workers(settings: Settings, sockets: list[BoundSocket], metrics_dir: Path,
                   workers: dict[int, subprocess.Popen], is_stopping) -> int:  # type: ignore[no-untyped-def]
    """Restart a worker that died on its own; return once every worker has stopped after SIGTERM."""
    while True:
        time.sleep(0.2)
        if is_stopping():
            for process in workers.values():
                process.wait()
            return 0
        for index, process in list(workers.items()):
            if process.poll() is not None and not is_stopping():
                log.error("worker %d (pid %d) exited with %s; restarting it", index, process.pid, process.returncode)
                replacement, read_fd = _start_worker(settings, sockets, metrics_dir, index)
                workers[index] = replacement
                try:
                    _wait_ready(read_fd, replacement)
                except RuntimeError:
                    log.exception("worker %d could not restart", index)


def worker_main() -> int:
    """Entry point of a worker process started by :func:`_supervise_workers`."""
    from .logconfig import configure_logging

    settings = _settings_from_env(os.environ["IHE_ENGINE_SETTINGS"])
    configure_logging(settings.log_format)
    sockets = []
    for spec in os.environ["IHE_ENGINE_FDS"].split(","):
        name, fd = spec.split("=")
        sock = socket.socket(fileno=int(fd))
        kind = "stream" if sock.type == socket.SOCK_STREAM else "datagram"
        sockets.append(BoundSocket(name=name, kind=kind, sock=sock))
    return _serve_in_process(settings, sockets, announce_ready=False,
                             ready_fd=int(os.environ["IHE_ENGINE_READY_FD"]))


if __name__ == "__main__":
    sys.exit(worker_main())
