"""Affinity domain value sets: which codes and mime types a registry accepts.

Two sources: the NIST XDS test kit's ``codes.xml`` (what the conformance replay needs) and the engine's own TOML
under ``profiles/`` (see ``profiles/xds-affinity-example.toml``). A code is accepted when its (code,
codingScheme) pair is listed for its attribute; the display name is not restricted (IHE leaves it free). An
attribute the code set does not list, or no code set at all, accepts any well-formed code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from lxml import etree

from .. import xmlsafe
from ..errors import ConfigurationError
from . import constants as c
from .errors import XDS_REGISTRY_METADATA_ERROR, RegistryError
from .model import Association, Code, DocumentEntry, Folder, RegistryObject, Submission, SubmissionSet

__all__ = ["CodeType", "CodeSet", "load_code_set", "check_codes", "MIME_TYPE"]

MIME_TYPE = "mimeType"
_SCHEME_FOR_NAME = MappingProxyType({name: scheme for scheme, name in c.CODED_ATTRIBUTES.items()})


@dataclass(frozen=True, kw_only=True)
class CodeType:
    """The allowed values of one coded attribute (classCode, formatCode, ...), as (code, codingScheme) pairs."""

    name: str
    classification_scheme: str | None
    codes: frozenset[tuple[str, str]] = frozenset()
    displays: Mapping[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, code: Code) -> bool:
        return (code.code, code.scheme) in self.codes

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True, kw_only=True)
class CodeSet:
    """An affinity domain's value sets, keyed by attribute name; ``mime_types`` empty means unrestricted."""

    name: str = ""
    code_types: Mapping[str, CodeType] = field(default_factory=dict)
    mime_types: frozenset[str] = frozenset()
    assigning_authorities: tuple[str, ...] = ()  # patient id assigning authority OIDs, in file order

    def for_scheme(self, classification_scheme: str) -> CodeType | None:
        """The code type restricting the attribute with this classificationScheme, if the set lists it."""
        name = c.CODED_ATTRIBUTES.get(classification_scheme)
        return self.code_types.get(name) if name else None

    @classmethod
    def from_nist_codes_xml(cls, source: Path | bytes) -> CodeSet:
        """The NIST test kit format: Codes > CodeType[@name, @classScheme] > Code[@code, @display,
        @codingScheme]; the mimeType CodeType lists Code[@code]; AssigningAuthority[@id='&OID&ISO']."""
        data = source.read_bytes() if isinstance(source, Path) else source
        root = xmlsafe.parse(data, what="codes.xml")
        code_types: dict[str, CodeType] = {}
        mime_types: set[str] = set()
        authorities: list[str] = []
        for element in root:
            if element.tag == "CodeType":
                name = element.get("name", "")
                if name == MIME_TYPE:
                    mime_types.update(code.get("code", "") for code in element.iter("Code"))
                else:
                    code_types[name] = _nist_code_type(element, name)
            elif element.tag == "AssigningAuthority":
                authorities.append(element.get("id", "").strip("&").removesuffix("&ISO"))
        return cls(name=f"{source.parent.name}/{source.name}" if isinstance(source, Path) else "codes.xml",
                   code_types=MappingProxyType(code_types), mime_types=frozenset(mime_types),
                   assigning_authorities=tuple(authorities))

    @classmethod
    def from_toml(cls, path: Path) -> CodeSet:
        """The engine's format (``profiles/xds-affinity-example.toml`` documents it)."""
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
        code_types = {}
        for name, table in raw.get("code_types", {}).items():
            code_types[name] = _toml_code_type(path, name, table)
        return cls(name=raw.get("name", path.stem), code_types=MappingProxyType(code_types),
                   mime_types=frozenset(raw.get("mime_types", ())),
                   assigning_authorities=tuple(raw.get("assigning_authorities", ())))


def _nist_code_type(element: etree._Element, name: str) -> CodeType:
    pairs: dict[tuple[str, str], str] = {}
    for code in element.iter("Code"):
        pairs[(code.get("code", ""), code.get("codingScheme", ""))] = code.get("display", "")
    scheme = element.get("classScheme") or _SCHEME_FOR_NAME.get(name)
    return CodeType(name=name, classification_scheme=scheme, codes=frozenset(pairs), displays=pairs)


def _toml_code_type(path: Path, name: str, table: Mapping) -> CodeType:
    scheme = table.get("classification_scheme") or _SCHEME_FOR_NAME.get(name)
    if scheme is None:
        raise ConfigurationError(f"{path}: code type {name!r} is not an XDS coded attribute; give its "
                                 "classification_scheme")
    pairs: dict[tuple[str, str], str] = {}
    for entry in table.get("codes", ()):
        try:
            pairs[(entry["code"], entry["scheme"])] = entry.get("display", "")
        except KeyError as exc:
            raise ConfigurationError(f"{path}: a code of {name!r} lacks {exc.args[0]!r}") from None
    return CodeType(name=name, classification_scheme=scheme, codes=frozenset(pairs), displays=pairs)


def load_code_set(path: Path | str) -> CodeSet:
    """A code set from a file: ``.toml`` in the engine's format, anything else as NIST codes.xml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"affinity domain code set {path} does not exist")
    return CodeSet.from_toml(path) if path.suffix == ".toml" else CodeSet.from_nist_codes_xml(path)


# =============================================================================================================

def check_codes(submission: Submission, code_set: CodeSet | None) -> list[RegistryError]:
    """XDSRegistryMetadataError for each coded value or mimeType outside the affinity domain's sets, naming the
    object, the attribute, the code and its scheme; no code set accepts everything."""
    if code_set is None:
        return []
    errors: list[RegistryError] = []
    for obj in (*submission.submission_sets, *submission.entries, *submission.folders, *submission.associations):
        errors.extend(_check_object(obj, code_set))
    return errors


def _check_object(obj: RegistryObject, code_set: CodeSet) -> Iterator[RegistryError]:
    if isinstance(obj, DocumentEntry) and code_set.mime_types and obj.mime_type is not None \
            and obj.mime_type not in code_set.mime_types:
        yield _error(obj, f"mimeType {obj.mime_type!r} is not allowed in affinity domain {code_set.name}",
                     "/@mimeType")
    for scheme, code in _coded_values(obj):
        code_type = code_set.for_scheme(scheme)
        if code_type is not None and not code_type.allows(code):
            yield _error(obj, f"{code_type.name} code {code.code!r} with codingScheme {code.scheme!r} is not in "
                              f"affinity domain {code_set.name}",
                         f"/Classification[@classificationScheme='{scheme}']")


def _coded_values(obj: RegistryObject) -> Iterable[tuple[str, Code]]:
    if isinstance(obj, DocumentEntry):
        singles = ((c.DE_CLASS_CODE, obj.class_code), (c.DE_TYPE_CODE, obj.type_code),
                   (c.DE_FORMAT_CODE, obj.format_code),
                   (c.DE_HEALTHCARE_FACILITY_TYPE_CODE, obj.healthcare_facility_type_code),
                   (c.DE_PRACTICE_SETTING_CODE, obj.practice_setting_code))
        yield from ((scheme, code) for scheme, code in singles if code is not None)
        yield from ((c.DE_CONFIDENTIALITY_CODE, code) for code in obj.confidentiality_codes)
        yield from ((c.DE_EVENT_CODE_LIST, code) for code in obj.event_codes)
    elif isinstance(obj, SubmissionSet) and obj.content_type_code is not None:
        yield c.SS_CONTENT_TYPE_CODE, obj.content_type_code
    elif isinstance(obj, Folder):
        yield from ((c.FOLDER_CODE_LIST, code) for code in obj.code_list)
    elif isinstance(obj, Association):
        yield from ((c.ASSOCIATION_DOCUMENTATION, code) for code in obj.documentation)


def _error(obj: RegistryObject, problem: str, where: str) -> RegistryError:
    kind = type(obj).__name__
    tag = {"DocumentEntry": "ExtrinsicObject", "Association": "Association"}.get(kind, "RegistryPackage")
    return RegistryError(error_code=XDS_REGISTRY_METADATA_ERROR, code_context=f"{kind} {obj.entry_uuid}: {problem}",
                         location=f"{tag}[@id='{obj.entry_uuid}']{where}")
