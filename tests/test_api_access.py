"""Authentication of the engine's own HTTP APIs (identity vigilance, audit log) in the real ``serve``: bearer tokens
with scopes, certified TLS peers, loopback; refusals are 401/403 with a Security Alert audit record."""

from __future__ import annotations

import hashlib
import json
import ssl
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from ihe_engine.errors import ConfigurationError
from ihe_engine.web.access import ApiAccess
from serving import start_engine

pytestmark = pytest.mark.slow

WAIT = 30  # seconds: an upper bound for waits, never asserted on
READER, DESK, AUDITOR = "reader-token-1", "desk-token-2", "auditor-token-3"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


CONFIG = f"""
[api]
allow_loopback = false

[[api.tokens]]
name = "reader"
sha256 = "{sha(READER)}"
scopes = ["identity:read"]

[[api.tokens]]
name = "desk"
sha256 = "{sha(DESK)}"
scopes = ["identity:read", "identity:decide"]

[[api.tokens]]
name = "auditor"
sha256 = "{sha(AUDITOR)}"
scopes = ["audit:read"]
"""


def call(url: str, *, token: str | None = None, body: dict | None = None, context=None) -> tuple[int, dict, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=WAIT, context=context) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    directory = tmp_path_factory.mktemp("api")
    config = directory / "engine.toml"
    config.write_text(CONFIG)
    engine = start_engine(directory / "var", "--config", str(config))
    engine.base = engine.url("health").rsplit("/health", 1)[0]
    yield engine
    engine.stop()


def test_no_credentials_is_401_with_a_bearer_challenge(engine):
    for path in ("/api/identity/queue", "/fhir/AuditEvent", "/api/audit/patient-history?patient=X"):
        status, headers, body = call(engine.base + path)
        assert status == 401, path
        assert headers.get("WWW-Authenticate", headers.get("www-authenticate")) == 'Bearer realm="ihe-engine"'
        assert "authentication required" in body["error"]


def test_unknown_or_malformed_token_is_401(engine):
    assert call(engine.base + "/api/identity/queue", token="not-a-known-token")[0] == 401
    request = urllib.request.Request(engine.base + "/api/identity/queue", headers={"Authorization": "Basic eDp5"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=WAIT)
    assert refused.value.code == 401


def test_each_token_reaches_only_its_scopes(engine):
    assert call(engine.base + "/api/identity/queue", token=READER)[0] == 200
    assert call(engine.base + "/api/identity/queue", token=DESK)[0] == 200
    status, _, body = call(engine.base + "/api/identity/queue/1/accept", token=READER, body={"by": "someone"})
    assert status == 403 and "identity:decide" in body["error"]
    assert call(engine.base + "/api/identity/queue/999999/accept", token=DESK, body={"by": "dr x"})[0] == 404
    assert call(engine.base + "/fhir/AuditEvent", token=READER)[0] == 403
    assert call(engine.base + "/fhir/AuditEvent", token=AUDITOR)[0] == 200
    assert call(engine.base + "/api/identity/queue", token=AUDITOR)[0] == 403


def test_refusals_are_security_alerts_and_uses_name_the_token(engine):
    call(engine.base + "/api/identity/queue", token="a-token-nobody-issued")
    failed_login = wait_for(engine, {"type": "110114"},
                            lambda event: "unknown bearer token" in event.get("outcomeDesc", ""))
    assert "/api/identity/queue" in failed_login["outcomeDesc"] and failed_login["outcome"] == "4"
    call(engine.base + "/api/identity/queue/1/reject", token=READER, body={"by": "someone"})
    restricted = wait_for(engine, {"type": "110113"}, lambda event: "identity:decide" in event.get("outcomeDesc", ""))
    assert restricted["subtype"][0]["code"] == "110132"
    used = wait_for(engine, {"type": "110101"}, lambda event: any(
        agent.get("who", {}).get("identifier", {}).get("value") == "token:auditor" for agent in event["agent"]))
    assert used["type"]["code"] == "110101"


def wait_for(engine, params: dict, matches) -> dict:
    deadline = time.monotonic() + WAIT
    query = "&".join(f"{key}={value}" for key, value in params.items())
    while True:
        status, _, bundle = call(f"{engine.base}/fhir/AuditEvent?{query}", token=AUDITOR)
        assert status == 200, bundle
        found = [entry["resource"] for entry in bundle.get("entry", []) if matches(entry["resource"])]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no AuditEvent matching {params}: {bundle.get('entry', [])[:3]}")
        time.sleep(0.05)


def test_methods_the_api_does_not_serve_are_405_before_any_check(engine):
    for method in ("PUT", "DELETE", "PATCH"):
        request = urllib.request.Request(engine.base + "/api/identity/queue/1/accept", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=WAIT)
        assert refused.value.code == 405, method
    assert call(engine.base + "/fhir/AuditEvent", token=AUDITOR)[0] == 200  # and HEAD counts as GET:
    head = urllib.request.Request(engine.base + "/fhir/AuditEvent", method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(head, timeout=WAIT)
    assert refused.value.code == 401


def test_certified_peers_and_loopback_only_when_turned_on(tmp_path, pki):
    config = tmp_path / "engine.toml"
    config.write_text("[api]\nallow_certified_peers = true\n")
    engine = start_engine(tmp_path / "tls", "--host", "127.0.0.1", "--config", str(config), "--tls-cert",
                          str(pki.server.cert), "--tls-key", str(pki.server.key), "--tls-ca", str(pki.ca))
    try:
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.client.cert), str(pki.client.key))
        base = engine.url("health").rsplit("/health", 1)[0].replace("127.0.0.1", "localhost")
        assert call(base + "/api/identity/queue", context=context)[0] == 200
    finally:
        engine.stop()
    plain = start_engine(tmp_path / "plain")  # no [api] section: closed, even to this machine
    try:
        assert call(plain.url("health").rsplit("/health", 1)[0] + "/api/identity/queue")[0] == 401
    finally:
        plain.stop()
    local = tmp_path / "local.toml"
    local.write_text("[api]\nallow_loopback = true\n")
    loopback = start_engine(tmp_path / "loopback", "--config", str(local))
    try:
        assert call(loopback.url("health").rsplit("/health", 1)[0] + "/api/identity/queue")[0] == 200
    finally:
        loopback.stop()


@pytest.mark.parametrize("section, message", [
    ({"api": {"tokens": [{"name": "x", "sha256": "abc", "scopes": ["audit:read"]}]}}, "64 hex digits"),
    ({"api": {"tokens": [{"name": "x", "sha256": "a" * 64, "scopes": ["everything"]}]}}, "scopes must be"),
    ({"api": {"tokens": [{"sha256": "a" * 64, "scopes": ["audit:read"]}]}}, "needs a name"),
    ({"api": {"allow_loopback": "yes"}}, "true or false"),
    ({"api": {"allow_everyone": True}}, "unknown keys"),
])
def test_bad_api_configuration_is_refused(section, message):
    with pytest.raises(ConfigurationError, match=message):
        ApiAccess.from_settings(SimpleNamespace(extra=section))
