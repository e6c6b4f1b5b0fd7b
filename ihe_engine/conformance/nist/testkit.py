"""Discovery of the NIST test kit: tests, their sections, and the collections they belong to.

Collections are not stored in the kit; the toolkit computes them at start from the tokens of each test's
``collections.txt``. We do the same, so a kit update is picked up without a hand-kept list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping

__all__ = [
    "SUPPORT_TESTS",
    "TARGET_COLLECTIONS",
    "TestDefinition",
    "TestKit",
    "find_kit_root",
    "natural_key",
    "read_sections",
]

#: The registry and repository collections the replayer targets, in run order.
TARGET_COLLECTIONS = ("reg", "R.b", "SQ.b", "rep", "reg_mu", "reg_rmu", "reg_rm", "rep_rd")

#: Set-up tests other tests depend on, with the role the orchestration gives them.
SUPPORT_TESTS: Mapping[str, str] = {
    "15817": "patient feed: registerPid, the $patientid$ of every registry test",
    "15817b": "patient feed: registerAltPid, used by 12374 and 11997",
    "15818": "patient feed: sqPid, the patient of the 12346 query data",
    "15819": "patient feed: first multi-patient query patient",
    "15820": "patient feed: second multi-patient query patient",
    "12346": "query data set (6 DocumentEntries, 5 SubmissionSets, 2 Folders) under sqPid",
    "12374": "second-patient data set under registerAltPid, for 12368",
    "12361": "multi-patient query data under the two MPQ patients",
}

# The areas the toolkit scans for collections.txt ("testdata" is absent from the public kit; the
# testdata-registry/-repository/-xdr directories hold data the toolkit loads itself and are not scanned).
_AREAS = ("tests", "testdata", "examples", "selftest")


@dataclass(frozen=True, kw_only=True)
class TestDefinition:
    """One test of the kit: its directory, title, collection tokens and sections in run order."""

    __test__ = False  # not a pytest class

    test_id: str
    path: Path
    area: str
    title: str
    collections: frozenset[str]
    sections: tuple[str, ...]

    def testplan_path(self, section: str) -> Path:
        return self.path / section / "testplan.xml" if section != "." else self.path / "testplan.xml"

    def section_dir(self, section: str) -> Path:
        return self.path if section == "." else self.path / section


def find_kit_root(path: str | Path) -> Path:
    """Accept the toolkit checkout, its ``testkit`` directory or a parent holding ``nist-iheos-toolkit2``."""
    path = Path(path)
    for candidate in (path / "testkit", path, path / "nist-iheos-toolkit2" / "testkit"):
        if (candidate / "tests").is_dir():
            return candidate
    raise FileNotFoundError(f"no NIST test kit (a testkit/tests directory) under {path}")


def read_sections(test_dir: Path) -> tuple[str, ...]:
    """Sections in run order: index.idx wins; a lone top-level testplan.xml is section "."; else none."""
    index = test_dir / "index.idx"
    if index.is_file():
        lines = (line.strip() for line in index.read_text(encoding="utf-8", errors="replace").splitlines())
        return tuple(line for line in lines if line)
    if (test_dir / "testplan.xml").is_file():
        return (".",)
    return ()


def natural_key(text: str) -> tuple:
    """Sort 11990 before 12000 and 40000b after 40000."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _read_tokens(path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    return frozenset(path.read_text(encoding="utf-8", errors="replace").split())


def _read_title(path: Path) -> str:
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[0].strip() if lines else ""


class TestKit:
    """The kit read in place (nothing is copied): tests by id, collections by token."""

    __test__ = False

    def __init__(self, root: str | Path) -> None:
        self.root = find_kit_root(root)
        self.toolkit_root = self.root.parent

    @property
    def codes_file(self) -> Path:
        return self.toolkit_root / "environment" / "default" / "codes.xml"

    @property
    def source_id(self) -> str:
        """The SubmissionSet sourceId the toolkit stamps on every submission."""
        path = self.toolkit_root / "xdstest" / "sourceid.txt"
        return path.read_text(encoding="utf-8").strip() if path.is_file() else "1.3.6.1.4.1.21367.4"

    def _area_dirs(self) -> Iterable[tuple[str, Path]]:
        for area in _AREAS:
            yield area, self.root / area

    @cached_property
    def tests(self) -> Mapping[str, TestDefinition]:
        """Every test of every area; the ``tests`` area wins when an id appears twice."""
        found: dict[str, TestDefinition] = {}
        for area, directory in self._area_dirs():
            if not directory.is_dir():
                continue
            for test_dir in sorted(directory.iterdir()):
                if test_dir.is_dir() and test_dir.name not in found:
                    found[test_dir.name] = TestDefinition(
                        test_id=test_dir.name, path=test_dir, area=area,
                        title=_read_title(test_dir / "readme.txt"),
                        collections=_read_tokens(test_dir / "collections.txt"),
                        sections=read_sections(test_dir))
        return found

    def test(self, test_id: str) -> TestDefinition:
        try:
            return self.tests[test_id]
        except KeyError:
            raise KeyError(f"test {test_id} is not in the kit at {self.root}") from None

    @cached_property
    def collections(self) -> Mapping[str, tuple[str, ...]]:
        """Collection token -> test ids (natural order), computed from collections.txt files."""
        members: dict[str, set[str]] = {}
        for definition in self.tests.values():
            for token in definition.collections:
                members.setdefault(token, set()).add(definition.test_id)
        return {token: tuple(sorted(ids, key=natural_key)) for token, ids in members.items()}

    def collection(self, name: str) -> tuple[str, ...]:
        """A computed collection, else a hand-kept ``static.collections/<name>.tc`` list."""
        if name in self.collections:
            return self.collections[name]
        static = self.root / "static.collections" / f"{name}.tc"
        if static.is_file():
            return tuple(line.strip() for line in static.read_text(encoding="utf-8").splitlines() if line.strip())
        raise KeyError(f"no collection {name!r} in the kit")

    def support_tests(self) -> tuple[TestDefinition, ...]:
        return tuple(self.tests[test_id] for test_id in SUPPORT_TESTS if test_id in self.tests)
