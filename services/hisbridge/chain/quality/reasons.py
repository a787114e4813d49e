"""Why a record was rejected: a value the pipeline carries to quarantine (never an exception)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SHOWN = 40  # value excerpts in messages are cut so a reason never carries a whole free-text field


@dataclass(frozen=True)
class Reason:
    rule: str
    field: str | None
    message_zh: str
    message_en: str

    @property
    def message(self) -> str:
        return f"{self.message_zh} / {self.message_en}"

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "field": self.field, "message": self.message}


def shown(value: object, secret: bool) -> str:
    """How a value may appear in a message: never for encrypted (identity) fields — reasons reach the
    quarantine topic, which must not hold plaintext identity data."""
    if secret:
        return "<已隐藏 hidden>"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
