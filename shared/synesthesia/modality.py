"""The three kinds of content that share one embedding space."""

from __future__ import annotations

from enum import StrEnum

from synesthesia.errors import InvalidInput


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        """Accepts 'text', 'IMAGE', 'MODALITY_AUDIO' …; raises InvalidInput otherwise."""
        if isinstance(value, Modality):
            return value
        name = str(value).strip().lower().removeprefix("modality_")
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise InvalidInput(f"unknown modality {value!r}; expected one of {known}") from None
