"""Engine settings: one frozen object built from defaults, a TOML file (``--config``) and flags, flags winning.

Every subcommand that touches the store shares ``--data-dir``, ``--db-url`` and ``--config`` with ``serve``,
so it reads what a running ``serve`` writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["Settings", "add_store_arguments", "add_serve_arguments", "settings_from_args", "load_config_file"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path = Path("./var")
    db_url: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8080
    mllp_port: int = 2575
    audit_tcp_port: int = 6514
    audit_udp_port: int = 5514
    affinity_domain: str | None = None
    repository_id: str | None = None
    xds_codes: Path | None = None
    home_community_id: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_pinned: tuple[str, ...] = ()
    tls_crl: Path | None = None
    tls_verify_hostname: bool = False
    workers: int = 1
    db_threads: int | None = None
    max_soap_body: int = 1024 * 1024 * 1024
    max_xml_bytes: int = 64 * 1024 * 1024
    max_mllp_message: int = 16 * 1024 * 1024
    mllp_idle_timeout: float = 300.0
    http_idle_timeout: float = 120.0
    hl7_exchange_retention_days: float = 30.0
    hl7_batch_size: int = 64
    log_format: str = "text"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.db_threads is not None and self.db_threads < 1:
            raise ConfigurationError(f"db_threads must be at least 1, not {self.db_threads}")
        if self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, not {self.workers}")
        if self.hl7_batch_size < 1:
            raise ConfigurationError(f"hl7_batch_size must be at least 1, not {self.hl7_batch_size}")
        for name in ("http_port", "mllp_port", "audit_tcp_port", "audit_udp_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigurationError(f"{name} must be a port number from 0 to 65535, not {port}")
        given = [self.tls_cert is not None, self.tls_key is not None, self.tls_ca is not None]
        if any(given) and not all(given):
            raise ConfigurationError("mutual TLS needs all three of --tls-cert, --tls-key and --tls-ca")
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(f"log_format must be text or json, not {self.log_format!r}")

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'engine.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


_PATH_KEYS = {"data_dir", "tls_cert", "tls_key", "tls_ca", "tls_crl", "xds_codes"}
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config whose keys are the long flag names (dashes or underscores)."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in _FIELDS and name != "extra":
            values[name] = value
        else:
            extra[name] = value
    if extra:
        values["extra"] = extra
    return values


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in _PATH_KEYS & out.keys():
        if out[key] is not None:
            out[key] = Path(out[key])
    if "tls_pinned" in out and out["tls_pinned"] is not None:
        pins = out["tls_pinned"]
        out["tls_pinned"] = tuple([pins] if isinstance(pins, str) else pins)
    return out


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every store-reading subcommand shares with serve."""
    parser.add_argument("--config", type=Path, help="TOML file with the same keys as the long flags")
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./var)")
    parser.add_argument("--db-url", help="SQLAlchemy URL (default SQLite in the data dir; "
                                         "postgresql+psycopg://... for PostgreSQL)")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="SOAP/HTTP port (default 8080; 0 picks a free port)")
    parser.add_argument("--mllp-port", type=int, help="HL7 v2 MLLP port (default 2575)")
    parser.add_argument("--audit-tcp-port", type=int, help="syslog TCP/TLS port for ATNA (default 6514)")
    parser.add_argument("--audit-udp-port", type=int, help="syslog UDP port for ATNA (default 5514)")
    parser.add_argument("--affinity-domain", help="assigning authority OID of patient ids the XDS registry accepts")
    parser.add_argument("--repository-id", help="repositoryUniqueId OID of the embedded XDS repository")
    parser.add_argument("--xds-codes", type=Path,
                        help="affinity domain code set: a NIST codes.xml or the engine's TOML profile "
                             "(default: any well-formed code is accepted)")
    parser.add_argument("--home-community-id", help="homeCommunityId (urn:oid:...) of this community")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate of this node (enables mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of this node")
    parser.add_argument("--tls-ca", type=Path, help="PEM bundle of CAs whose clients are accepted")
    parser.add_argument("--tls-pinned", action="append", metavar="SHA256",
                        help="accept only peers with this certificate SHA-256 fingerprint (repeatable)")
    parser.add_argument("--tls-crl", type=Path, help="PEM certificate revocation list checked for peers")
    parser.add_argument("--tls-verify-hostname", action="store_true", default=None,
                        help="check outbound peers' certificates against the host name (RFC 6125)")
    parser.add_argument("--workers", type=int, help="worker processes sharing the listeners (default 1)")
    parser.add_argument("--db-threads", type=int,
                        help="threads for blocking storage work per worker (default 2 on SQLite, 16 on PostgreSQL)")
    parser.add_argument("--log-format", choices=("text", "json"), help="log line format (default text)")
    parser.add_argument("--hl7-batch-size", type=int,
                        help="HL7 v2 messages committed together at most (group commit; default 64)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Defaults, then the config file, then the flags that were given."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for name in _FIELDS:
        flag_value = getattr(args, name, None)
        if flag_value is not None:
            values[name] = flag_value
    return Settings(**_coerce(values))
