"""Interoperability with a SOAP stack this project did not write: gSOAP (Debian's ``gsoap`` package).

tests/independent/xds_repository_client.c, compiled against gSOAP from tests/independent/xds_repository.h, sends
ITI-41 as SOAP 1.2 MTOM (WS-Addressing by gSOAP's wsa plugin, the document as an xop:Include part) and ITI-43,
whose MTOM answer gSOAP resolves itself. Why gSOAP and not the npm ``soap`` package: node-soap 1.13 labels every
MTOM request as SOAP 1.1 (``start-info="text/xml"``, root part ``type="text/xml"``, hard-coded in its
lib/http.js whatever ``forceSoap12Headers`` says), so it cannot send a SOAP 1.2 MTOM request.

gSOAP comes from the system (``soapcpp2`` on PATH, headers and libgsoap installed) or, when missing, from the
Debian packages fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
tests/independent/.gsoap (no root needed). The test skips only when that is impossible: no C compiler, or no
gSOAP and no apt-get/dpkg-deb to fetch it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from ihe_engine.ns import LCM, qn
from xds_repository_server import REPOSITORY_ID, start_repository_server, stop_repository_server
from xds_submissions import Doc, feed_patient, provide_request

HERE = Path(__file__).resolve().parent / "independent"
CACHE = HERE / ".gsoap"
PACKAGES = ("gsoap", "libgsoap-dev")
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"


@dataclass(frozen=True)
class Gsoap:
    soapcpp2: Path
    include: Path  # holds stdsoap2.h
    import_dir: Path  # xop.h, wsa5.h, ...
    plugin_dir: Path  # wsaapi.c
    library: Path  # libgsoap.a


def _find_gsoap(root: Path) -> Gsoap | None:
    soapcpp2 = next(iter(root.glob("usr/bin/soapcpp2")), None)
    header = next(iter(root.glob("usr/include/stdsoap2.h")), None)
    share = next(iter(root.glob("usr/share/gsoap")), None)
    library = next(iter(root.glob("usr/lib/*/libgsoap.a")), None) or next(iter(root.glob("usr/lib/libgsoap.a")), None)
    if not (soapcpp2 and header and share and library and (share / "plugin/wsaapi.c").is_file()):
        return None
    return Gsoap(soapcpp2, header.parent, share / "import", share / "plugin", library)


def _fetch_into_cache() -> Gsoap | None:
    """Download the Debian packages and unpack them under tests/independent/.gsoap (no installation)."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    downloads = CACHE / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(["apt-get", "download", *PACKAGES], cwd=downloads, capture_output=True, text=True)
    if fetched.returncode != 0:
        pytest.fail(f"apt-get download {' '.join(PACKAGES)} failed: {fetched.stderr[-2000:]}")
    for deb in downloads.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "root")], check=True)
    return _find_gsoap(CACHE / "root")


def _gsoap() -> Gsoap:
    found = _find_gsoap(Path("/")) or _find_gsoap(CACHE / "root") or _fetch_into_cache()
    if found is None:
        pytest.skip("gSOAP is not installed and cannot be fetched (needs apt-get and dpkg-deb)")
    return found


def _build(gsoap: Gsoap, build: Path) -> Path:
    """soapcpp2 on the interface header, then one cc call; rebuilt whenever the sources change."""
    sources = [HERE / "xds_repository.h", HERE / "xds_repository_client.c"]
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + str(gsoap).encode()).hexdigest()[:16]
    binary = build / f"xds_repository_client-{stamp}"
    if binary.is_file():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the gSOAP client")
    generated = build / f"gen-{stamp}"
    generated.mkdir(parents=True, exist_ok=True)
    _run([str(gsoap.soapcpp2), "-c", "-C", "-2", "-L", "-x", f"-I{gsoap.import_dir}", "-d", str(generated),
          str(HERE / "xds_repository.h")])
    _run([compiler, "-O1", "-o", str(binary), f"-I{generated}", f"-I{gsoap.include}", f"-I{gsoap.plugin_dir}",
          str(HERE / "xds_repository_client.c"), str(generated / "soapC.c"), str(generated / "soapClient.c"),
          str(gsoap.plugin_dir / "wsaapi.c"), str(gsoap.library)])
    return binary


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{Path(command[0]).name} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                    f"\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def client() -> Path:
    return _build(_gsoap(), CACHE / "build")


@pytest.fixture(scope="module")
def server(reactor_thread, tmp_path_factory):
    running = start_repository_server(reactor_thread, tmp_path_factory.mktemp("independent"))
    with running.runtime.uow() as uow:
        feed_patient(uow.session)
        uow.commit()
    yield running
    stop_repository_server(reactor_thread, running)


def call(client: Path, *args: str) -> dict:
    result = subprocess.run([str(client), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def submit(client: Path, url: str, tmp_path: Path, docs: list[Doc]) -> dict:
    """ITI-41 by gSOAP: the metadata of ``provide_request`` and each document as an MTOM part."""
    request = provide_request(docs)
    metadata = tmp_path / "metadata.xml"
    metadata.write_bytes(etree.tostring(request.find(qn(LCM, "SubmitObjectsRequest"))))
    arguments = []
    for doc in docs:
        content = tmp_path / f"{doc.entry_id}.bin"
        content.write_bytes(doc.content)
        arguments.append(f"{doc.entry_id}={content}={doc.mime_type}")
    return call(client, url, "iti41", str(metadata), *arguments)


def test_gsoap_provides_in_mtom_and_retrieves(client, server, tmp_path):
    pdf = Doc(b"%PDF-1.4\r\n" + os.urandom(300_000) + b"\r\n%%EOF\r\n", mime_type="application/pdf")
    text = Doc(b"<ClinicalDocument/>", mime_type="text/xml")
    answer = submit(client, server.url, tmp_path, [pdf, text])
    assert answer == {"status": SUCCESS, "errors": []}, answer
    for doc in (pdf, text):
        out = tmp_path / f"out-{doc.entry_id}"
        out.mkdir()
        retrieved = call(client, server.url, "iti43", REPOSITORY_ID, doc.unique_id, str(out))
        assert (retrieved["status"], retrieved["errors"]) == (SUCCESS, [])
        [document] = retrieved["documents"]
        assert (document["uniqueId"], document["mimeType"], document["size"]) == \
            (doc.unique_id, doc.mime_type, len(doc.content))
        assert Path(document["file"]).read_bytes() == doc.content


def test_gsoap_sees_errors(client, server, tmp_path):
    wrong = Doc(b"declared with the wrong size", size="3")
    answer = submit(client, server.url, tmp_path, [wrong])
    assert answer == {"status": FAILURE, "errors": ["XDSRepositoryMetadataError"]}, answer
    missing = call(client, server.url, "iti43", REPOSITORY_ID, wrong.unique_id, str(tmp_path))
    assert (missing["status"], missing["errors"], missing["documents"]) == \
        (FAILURE, ["XDSDocumentUniqueIdError"], [])
