"""HL7 v3 PIX/PDQ request bodies written for the tests (ITI-44, ITI-45, ITI-47, QUQI), and schema loading.

Each builder returns the payload as bytes; ``envelope`` wraps one in a SOAP 1.2 envelope with WS-Addressing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from lxml import etree

HL7 = "urn:hl7-org:v3"
SCHEMA_DIR = "ihe-iti-info/schema/HL7V3/NE2008/multicacheschemas"
HOSPITAL = "1.2.250.1.999.1.1"
CLINIC = "1.2.250.1.999.1.2"
LAB = "1.2.250.1.999.1.3"
UNKNOWN_DOMAIN = "1.2.250.1.999.9.9"
INS_NIR = "1.2.250.1.213.1.4.8"


def _a(value: str) -> str:
    return quoteattr(value)


def _wrapper_head(interaction: str, message_id: str | None = None, *, processing: str = "P",
                  interaction_id: str | None = None) -> str:
    return f"""<{interaction} xmlns="{HL7}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ITSVersion="XML_1.0">
  <id root={_a(message_id or "1.2.250.1.999.7." + str(uuid.uuid4().int % 10**12))}/>
  <creationTime value="20261122010203"/>
  <interactionId root="2.16.840.1.113883.1.6" extension={_a(interaction_id or interaction)}/>
  <processingCode code={_a(processing)}/>
  <processingModeCode code="T"/>
  <acceptAckCode code="AL"/>
  <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.999.5.1"/></device></receiver>
  <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.999.5.2"/></device></sender>
"""


def patient_xml(ids: list[tuple[str, str]], *, family: str = "DUPONT", given: str = "Jean", gender: str = "M",
                birth: str = "19700101", city: str = "Paris", postal: str = "75001", birth_family: str | None = None,
                other_ids: list[tuple[str, str]] = (), reliability: str | None = None, phone: str = "+33100000000",
                birthplace: str | None = None) -> str:
    id_elements = "".join(f"<id root={_a(root)} extension={_a(ext)}/>" for root, ext in ids)
    names = f"<name use=\"L\"><given>{given}</given><family>{family}</family></name>" if family or given else \
        "<name nullFlavor=\"UNK\"/>"
    if birth_family:
        names += f"<name><given>{given}</given><family qualifier=\"BR\">{birth_family}</family></name>"
    others = "".join(
        f"<asOtherIDs classCode=\"PAT\"><id root={_a(root)} extension={_a(ext)}/>"
        f"<scopingOrganization classCode=\"ORG\" determinerCode=\"INSTANCE\"><id root={_a(root)}/>"
        "</scopingOrganization></asOtherIDs>" for root, ext in other_ids)
    place = (f"<birthPlace><addr><county>{birthplace}</county></addr></birthPlace>" if birthplace else "")
    observation = ("<subjectOf typeCode=\"SBJ\"><administrativeObservation classCode=\"VERIF\">"
                   f"<code code=\"{reliability}\" codeSystem=\"2.16.840.1.113883.12.445\"/>"
                   f"<value xsi:type=\"CE\" code=\"{reliability}\"/></administrativeObservation></subjectOf>"
                   if reliability else "")
    return f"""<patient classCode="PAT">{id_elements}<statusCode code="active"/>
  <patientPerson classCode="PSN" determinerCode="INSTANCE">{names}
    <telecom value="tel:{phone}" use="HP"/>
    <administrativeGenderCode code="{gender}"/><birthTime value="{birth}"/>
    <addr use="H"><streetAddressLine>1 rue de la Paix</streetAddressLine><city>{city}</city><postalCode>{postal}</postalCode><country>FR</country></addr>
    {others}{place}
  </patientPerson>
  <providerOrganization classCode="ORG" determinerCode="INSTANCE"><id root="{ids[0][0] if ids else HOSPITAL}"/>
    <contactParty classCode="CON"/></providerOrganization>{observation}
</patient>"""


def _feed(interaction: str, trigger: str, patient: str, *, replacement: str = "", message_id: str | None = None,
          **wrapper: str) -> bytes:
    return (_wrapper_head(interaction, message_id, **wrapper) + f"""  <controlActProcess classCode="CACT" moodCode="EVN">
    <code code="{trigger}" codeSystem="2.16.840.1.113883.1.6"/>
    <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN"><id nullFlavor="NA"/>
      <statusCode code="active"/><subject1 typeCode="SBJ">{patient}</subject1>
      <custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="{HOSPITAL}"/></assignedEntity></custodian>
      {replacement}</registrationEvent></subject>
  </controlActProcess>
</{interaction}>""").encode()


def add_patient(ids: list[tuple[str, str]], **traits) -> bytes:
    wrapper = {key: traits.pop(key) for key in ("message_id", "processing", "interaction_id") if key in traits}
    return _feed("PRPA_IN201301UV02", "PRPA_TE201301UV02", patient_xml(ids, **traits), **wrapper)


def revise_patient(ids: list[tuple[str, str]], **traits) -> bytes:
    return _feed("PRPA_IN201302UV02", "PRPA_TE201302UV02", patient_xml(ids, **traits))


def merge_patients(survivor: tuple[str, str], subsumed: tuple[str, str], **traits) -> bytes:
    replacement = f"""<replacementOf typeCode="RPLC"><priorRegistration classCode="REG" moodCode="EVN">
        <statusCode code="obsolete"/><subject1 typeCode="SBJ"><priorRegisteredRole classCode="PAT">
        <id root={_a(subsumed[0])} extension={_a(subsumed[1])}/></priorRegisteredRole></subject1>
      </priorRegistration></replacementOf>"""
    return _feed("PRPA_IN201304UV02", "PRPA_TE201304UV02", patient_xml([survivor], **traits), replacement=replacement)


def pix_query(identifier: tuple[str, str], data_sources: list[str] = (), *, query_id: str | None = None) -> bytes:
    sources = "".join(f"<dataSource><value root={_a(root)}/><semanticsText>DataSource.id</semanticsText></dataSource>"
                      for root in data_sources)
    return (_wrapper_head("PRPA_IN201309UV02") + f"""  <controlActProcess classCode="CACT" moodCode="EVN">
    <code code="PRPA_TE201309UV02" codeSystem="2.16.840.1.113883.1.6"/>
    <queryByParameter><queryId root="1.2.250.1.999.6" extension={_a(query_id or uuid.uuid4().hex)}/>
      <statusCode code="new"/><responsePriorityCode code="I"/>
      <parameterList>{sources}<patientIdentifier><value root={_a(identifier[0])} extension={_a(identifier[1])}/>
        <semanticsText>Patient.Id</semanticsText></patientIdentifier></parameterList>
    </queryByParameter>
  </controlActProcess>
</PRPA_IN201309UV02>""").encode()


def pdq_query(*, family: str | None = None, given: str | None = None, gender: str | None = None,
              birth: str | None = None, identifier: tuple[str, str] | None = None, domains: list[str] = (),
              city: str | None = None, postal: str | None = None, initial_quantity: int | None = None,
              query_id: str | None = None, birth_family: str | None = None,
              minimum_degree: int | None = None) -> bytes:
    parameters = []
    if gender:
        parameters.append(f"<livingSubjectAdministrativeGender><value code={_a(gender)}/>"
                          "<semanticsText>LivingSubject.administrativeGender</semanticsText>"
                          "</livingSubjectAdministrativeGender>")
    if birth:
        parameters.append(f"<livingSubjectBirthTime><value value={_a(birth)}/>"
                          "<semanticsText>LivingSubject.birthTime</semanticsText></livingSubjectBirthTime>")
    if identifier:
        parameters.append(f"<livingSubjectId><value root={_a(identifier[0])} extension={_a(identifier[1])}/>"
                          "<semanticsText>LivingSubject.id</semanticsText></livingSubjectId>")
    if family or given or birth_family:
        parts = (f"<given>{given}</given>" if given else "") + (f"<family>{family}</family>" if family else "") + \
            (f"<family qualifier=\"BR\">{birth_family}</family>" if birth_family else "")
        parameters.append(f"<livingSubjectName><value>{parts}</value>"
                          "<semanticsText>LivingSubject.name</semanticsText></livingSubjectName>")
    for root in domains:
        parameters.append(f"<otherIDsScopingOrganization><value root={_a(root)}/>"
                          "<semanticsText>OtherIDs.scopingOrganization.id</semanticsText>"
                          "</otherIDsScopingOrganization>")
    if city or postal:
        parts = (f"<city>{city}</city>" if city else "") + (f"<postalCode>{postal}</postalCode>" if postal else "")
        parameters.append(f"<patientAddress><value>{parts}</value><semanticsText>Patient.addr</semanticsText>"
                          "</patientAddress>")
    quantity = f"<initialQuantity value=\"{initial_quantity}\"/>" if initial_quantity is not None else ""
    if minimum_degree is not None:
        quantity += (f"<matchCriterionList><minimumDegreeMatch><value xsi:type=\"INT\" value=\"{minimum_degree}\"/>"
                     "<semanticsText>LivingSubject.MatchCriterion</semanticsText></minimumDegreeMatch>"
                     "</matchCriterionList>")
    return (_wrapper_head("PRPA_IN201305UV02") + f"""  <controlActProcess classCode="CACT" moodCode="EVN">
    <code code="PRPA_TE201305UV02" codeSystem="2.16.840.1.113883.1.6"/>
    <queryByParameter><queryId root="1.2.250.1.999.6" extension={_a(query_id or uuid.uuid4().hex)}/>
      <statusCode code="new"/><responseModalityCode code="R"/><responsePriorityCode code="I"/>{quantity}
      <parameterList>{"".join(parameters)}</parameterList>
    </queryByParameter>
  </controlActProcess>
</PRPA_IN201305UV02>""").encode()


def query_control(query_id: str, *, cancel: bool = False, quantity: int | None = None) -> bytes:
    element = "QUQI_IN000003UV01_Cancel" if cancel else "QUQI_IN000003UV01"
    status = "aborted" if cancel else "waitContinuedQueryResponse"
    count = f"<continuationQuantity value=\"{quantity}\"/>" if quantity is not None else ""
    return (_wrapper_head(element, interaction_id="QUQI_IN000003UV01") + f"""  <controlActProcess classCode="CACT" moodCode="EVN">
    <code code="PRPA_TE201306UV02" codeSystem="2.16.840.1.113883.1.6"/>
    <queryContinuation><queryId root="1.2.250.1.999.6" extension={_a(query_id)}/>{count}
      <statusCode code="{status}"/></queryContinuation>
  </controlActProcess>
</{element}>""").encode()


def envelope(payload: bytes, action: str, *, to: str = "http://localhost/pix") -> bytes:
    body = payload.decode()
    return f"""<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header><wsa:Action soap:mustUnderstand="true">{action}</wsa:Action>
    <wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>
    <wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>
    <wsa:To>{to}</wsa:To></soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>""".encode()


# -- schemas --------------------------------------------------------------------------------------------------------

_SCHEMAS: dict[str, etree.XMLSchema] = {}


def v3_schema(corpus: Path, interaction: str) -> etree.XMLSchema:
    """The official NE2008 schema of ``interaction`` from the corpus (no network), or a skip."""
    if interaction not in _SCHEMAS:
        path = corpus / SCHEMA_DIR / f"{interaction}.xsd"
        if not path.is_file():
            pytest.skip(f"HL7 v3 schema {path} not in the corpus")
        _SCHEMAS[interaction] = etree.XMLSchema(etree.parse(str(path), etree.XMLParser(no_network=True)))
    return _SCHEMAS[interaction]


def assert_valid(corpus: Path, element: etree._Element) -> None:
    interaction = etree.QName(element).localname.removesuffix("_Cancel")
    schema = v3_schema(corpus, interaction)
    if not schema.validate(element):
        raise AssertionError(f"{interaction} does not validate: {schema.error_log}\n"
                             + etree.tostring(element, pretty_print=True).decode())


def first(element: etree._Element, path: str) -> etree._Element | None:
    found = element.xpath(path, namespaces={"hl7": HL7})
    return found[0] if found else None


def values(element: etree._Element, path: str) -> list[str]:
    return [str(value) for value in element.xpath(path, namespaces={"hl7": HL7})]


# -- a loopback PIX Manager / PDQ Supplier ----------------------------------------------------------------------------

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ADD, REVISE, MERGE = (f"urn:hl7-org:v3:{name}" for name in ("PRPA_IN201301UV02", "PRPA_IN201302UV02",
                                                              "PRPA_IN201304UV02"))
PIX_QUERY, PDQ_QUERY = "urn:hl7-org:v3:PRPA_IN201309UV02", "urn:hl7-org:v3:PRPA_IN201305UV02"
CONTINUE, CANCEL = "urn:hl7-org:v3:QUQI_IN000003UV01_Continue", "urn:hl7-org:v3:QUQI_IN000003UV01_Cancel"


@contextmanager
def v3_endpoints(reactor, runtime, spool_dir: Path, *, notifier=None) -> Iterator[str]:
    """Serve /pix and /pdq (the engine's operations and WSDLs) on 127.0.0.1; yields the base URL."""
    from twisted.internet.threads import blockingCallFromThread
    from twisted.web import resource

    from ihe_engine.identity.hl7v3 import pdq_operations, pix_operations
    from ihe_engine.soap import SoapEndpoint
    from ihe_engine.web import BoundedSite

    wsdl_dir = Path(__file__).resolve().parent.parent / "schemas/wsdl"

    def start():
        root = resource.Resource()
        for name, wsdl, operations in (("pix", "pix-manager.wsdl", pix_operations(runtime, notifier=notifier)),
                                       ("pdq", "pdq-supplier.wsdl", pdq_operations(runtime))):
            endpoint = SoapEndpoint(name, runtime, wsdl=(wsdl_dir / wsdl).read_bytes())
            for operation in operations:
                endpoint.register(operation)
            root.putChild(name.encode(), endpoint)
        return reactor.listenTCP(0, BoundedSite(root, max_body=1 << 20, spool_dir=spool_dir), interface="127.0.0.1")

    port = blockingCallFromThread(reactor, start)
    try:
        yield f"http://127.0.0.1:{port.getHost().port}"
    finally:
        blockingCallFromThread(reactor, port.stopListening)


def post(url: str, payload: bytes, action: str, *, raw: bytes | None = None):
    """POST one SOAP 1.2 request; returns (HTTP status, the body's first element)."""
    import requests

    data = raw if raw is not None else envelope(payload, action, to=url)
    response = requests.post(url, data=data, timeout=30,
                             headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    body = etree.fromstring(response.content).find(f"{{{SOAP12}}}Body")
    return response.status_code, body[0]


def ack_code(answer: etree._Element) -> str:
    return first(answer, "hl7:acknowledgement/hl7:typeCode/@code")


def query_code(answer: etree._Element) -> str:
    return first(answer, "hl7:controlActProcess/hl7:queryAck/hl7:queryResponseCode/@code")


def details(answer: etree._Element) -> list[tuple[str, str]]:
    """(code, location) of every acknowledgementDetail."""
    return [(first(detail, "hl7:code/@code"), first(detail, "hl7:location/text()"))
            for detail in answer.xpath("hl7:acknowledgement/hl7:acknowledgementDetail", namespaces={"hl7": HL7})]
