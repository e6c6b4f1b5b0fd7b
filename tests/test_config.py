"""Settings come from defaults, then the TOML file, then flags; bad values stop the start with a clear message."""

from pathlib import Path

import pytest

from ihe_engine.cli import build_parser, main
from ihe_engine.config import settings_from_args
from ihe_engine.errors import ConfigurationError


def parse(*argv):
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


def test_defaults_match_the_documented_ones():
    settings = parse()
    assert (settings.host, settings.http_port, settings.mllp_port) == ("127.0.0.1", 8080, 2575)
    assert (settings.audit_tcp_port, settings.audit_udp_port, settings.workers) == (6514, 5514, 1)
    assert settings.data_dir == Path("./var")
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("var/engine.sqlite3")
    assert not settings.tls_enabled


def test_file_values_apply_and_flags_win(tmp_path):
    config = tmp_path / "engine.toml"
    config.write_text('http-port = 9000\nmllp_port = 9001\naffinity-domain = "1.2.3"\nworkers = 3\n'
                      'custom_section = {a = 1}\n')
    settings = parse("--config", str(config), "--http-port", "0")
    assert settings.http_port == 0
    assert settings.mllp_port == 9001
    assert settings.affinity_domain == "1.2.3"
    assert settings.workers == 3
    assert settings.extra == {"custom_section": {"a": 1}}


def test_tls_flags(tmp_path):
    settings = parse("--tls-cert", "n.pem", "--tls-key", "n.key", "--tls-ca", "ca.pem", "--tls-crl", "r.pem",
                     "--tls-pinned", "ab" * 32, "--tls-pinned", "cd" * 32, "--tls-verify-hostname")
    assert settings.tls_enabled and settings.tls_crl == Path("r.pem") and settings.tls_verify_hostname
    assert settings.tls_pinned == ("ab" * 32, "cd" * 32)


def test_db_url_and_data_dir(tmp_path):
    settings = parse("--data-dir", str(tmp_path), "--db-url", "postgresql+psycopg://u@h/db")
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.blob_dir == tmp_path / "blobs"


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "workers must be at least 1"),
    (["--http-port", "70000"], "http_port must be a port number"),
    (["--tls-cert", "a.pem"], "mutual TLS needs all three"),
])
def test_invalid_settings_are_refused(argv, message):
    with pytest.raises(ConfigurationError, match=message):
        parse(*argv)


def test_broken_config_file_is_named(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("http-port = \n")
    with pytest.raises(ConfigurationError, match="broken.toml is not valid TOML"):
        parse("--config", str(config))


def test_cli_reports_configuration_errors_with_exit_code_2(capsys, tmp_path):
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml does not exist" in capsys.readouterr().err


def test_store_subcommands_share_the_store_options(tmp_path, capsys):
    assert main(["db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert "hl7_exchange" in capsys.readouterr().out
    assert (tmp_path / "engine.sqlite3").is_file()
