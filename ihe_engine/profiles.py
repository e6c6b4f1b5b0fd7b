"""Declarative profile data from ``profiles/``: which transaction is recognised by which action or message type."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .resources import data_dir

__all__ = ["Transaction", "PROFILES_DIR", "transactions", "transaction_for_action"]

PROFILES_DIR = data_dir("profiles")


@dataclass(frozen=True, kw_only=True)
class Transaction:
    id: str
    name: str
    actor: str
    endpoint: str | None = None
    action: str | None = None
    response_action: str | None = None
    mtom: bool = False
    hl7: tuple[str, ...] = ()
    syslog: bool = False

    def __post_init__(self) -> None:
        if (self.action is None) != (self.response_action is None):
            raise ValueError(f"{self.id}: a SOAP transaction needs both action and response_action")


@cache
def transactions(path: Path = PROFILES_DIR / "iti-transactions.toml") -> dict[str, Transaction]:
    with open(path, "rb") as handle:
        raw = tomllib.load(handle)
    return {key: Transaction(id=key, **{**value, "hl7": tuple(value.get("hl7", ()))}) for key, value in raw.items()}


def transaction_for_action(action: str) -> Transaction | None:
    return next((t for t in transactions().values() if t.action == action), None)
