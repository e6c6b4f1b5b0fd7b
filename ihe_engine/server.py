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
    if settings.workers == 1:
        _print_listening(settings, sockets)
        return _serve_in_process(settings, sockets, announce_ready=True)
    return _supervise_workers(settings, sockets)


def _print_listening(settings: Settings, sockets: list[BoundSocket]) -> None:
    for line in listening_lines(settings, sockets):
        announce(line)


def announce(line: str) -> None:
    """One write per line: workers log to the same terminal or pipe, and must never split a line of ours."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def _serve_in_process(settings: Settings, sockets: list[BoundSocket], *, announce_ready: bool,
                      ready_fd: int | None = None) -> int:
    from twisted.internet import reactor

    from .bootstrap import build_runtime, start_listeners

    runtime = build_runtime(settings, reactor)
    try:
        ports = start_listeners(runtime, sockets)
    except BaseException:  # a configuration error found while starting: leave, do not wait on the pool threads
        runtime.threadpool.stop()
        raise
    for item in sockets:
        item.sock.close()  # the reactor holds its own duplicate of each descriptor

    def _ready() -> None:
        if announce_ready:
            announce("ready")
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
    supervisor = _Supervisor(settings, sockets, metrics_dir)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    _print_listening(settings, sockets)  # only now: a SIGTERM from here on stops the workers cleanly
    if not supervisor.start_all():
        return supervisor.wait_all()
    announce("ready")
    return supervisor.watch()


class _Supervisor:
    """Starts the workers, restarts one that dies on its own, and stops them all on SIGTERM."""

    def __init__(self, settings: Settings, sockets: list[BoundSocket], metrics_dir: Path) -> None:
        self.settings = settings
        self.sockets = sockets
        self.metrics_dir = metrics_dir
        self.workers: dict[int, subprocess.Popen] = {}
        self.stopping = False

    def on_signal(self, _signum: int, _frame: object) -> None:
        # Only flags and signals here: the main flow may be spawning a worker with the sockets right now.
        self.stopping = True
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def start_all(self) -> bool:
        """False when SIGTERM arrived during start-up."""
        for index in range(self.settings.workers):
            if self.stopping or not self._start(index):
                return False
        return not self.stopping

    def _start(self, index: int) -> bool:
        process, read_fd = _start_worker(self.settings, self.sockets, self.metrics_dir, index)
        self.workers[index] = process
        if self.stopping:  # the signal came while we were starting it: it was not in the list yet
            process.send_signal(signal.SIGTERM)
        try:
            _wait_ready(read_fd, process)
        except RuntimeError:
            if not self.stopping:
                log.exception("worker %d could not start", index)
            return False
        return True

    def watch(self) -> int:
        while not self.stopping:
            time.sleep(0.2)
            for index, process in list(self.workers.items()):
                if process.poll() is not None and not self.stopping:
                    log.error("worker %d (pid %d) exited with %s; restarting it", index, process.pid,
                              process.returncode)
                    self._forget(process)
                    self._start(index)
        return self.wait_all()

    def wait_all(self, timeout: float = 60.0) -> int:
        for item in self.sockets:  # with the workers' copies closing too, the kernel refuses new connections
            item.sock.close()
        deadline = time.monotonic() + timeout
        for process in self.workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
            self._forget(process)
        return 0

    def _forget(self, process: subprocess.Popen) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))


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
