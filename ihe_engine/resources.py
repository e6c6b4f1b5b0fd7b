"""Where the engine's data directories (profiles/, schemas/) are: the source tree, else the installed copy.

They live at the top of the repository (the design card's layout) and are installed as data files under
``<prefix>/share/ihe-engine`` by a regular (non-editable) install.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

__all__ = ["data_dir"]

SOURCE_ROOT = Path(__file__).resolve().parent.parent
INSTALLED_ROOT = Path(sysconfig.get_path("data")) / "share" / "ihe-engine"


def data_dir(name: str) -> Path:
    """``data_dir("profiles")`` or ``data_dir("schemas/wsdl")``."""
    for root in (SOURCE_ROOT, INSTALLED_ROOT):
        candidate = root / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"engine data directory {name!r} is neither in {SOURCE_ROOT} nor in {INSTALLED_ROOT}")
