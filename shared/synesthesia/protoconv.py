"""Conversions between library types and generated protobuf messages."""

from __future__ import annotations

from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality
from synesthesia.v1 import common_pb2

_TO_PROTO = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
    Modality.AUDIO: common_pb2.MODALITY_AUDIO,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


def modality_to_proto(m: Modality | str) -> common_pb2.Modality:
    return _TO_PROTO[Modality.parse(m)]


def modality_from_proto(value: int) -> Modality:
    """Raises InvalidInput for MODALITY_UNSPECIFIED and for values this build does not know."""
    if value == common_pb2.MODALITY_UNSPECIFIED:
        raise InvalidInput("modality is required (MODALITY_TEXT, MODALITY_IMAGE or MODALITY_AUDIO)")
    try:
        return _FROM_PROTO[value]  # type: ignore[index]
    except KeyError:
        raise InvalidInput(f"unknown modality {value}") from None
