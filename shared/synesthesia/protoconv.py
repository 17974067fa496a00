"""Every conversion between the library's types and the generated protobuf messages lives here:
modalities, collection configs, metadata structs, stored items and hits. Services call these;
the library (models, media, index) never sees a protobuf."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from synesthesia.errors import InvalidInput
from synesthesia.modality import Modality
from synesthesia.v1 import common_pb2, search_pb2

if TYPE_CHECKING:  # the encoders import this module; they need no index (nor FAISS) loaded
    from synesthesia.index.types import CollectionSpec, Hit, IndexKind, Metric, StoredItem

_TO_PROTO = {
    Modality.TEXT: common_pb2.MODALITY_TEXT,
    Modality.IMAGE: common_pb2.MODALITY_IMAGE,
    Modality.AUDIO: common_pb2.MODALITY_AUDIO,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}

# Metric and IndexKind are string enums: keyed by their values here.
_METRIC_IN = {
    search_pb2.METRIC_UNSPECIFIED: "ip",
    search_pb2.METRIC_IP: "ip",
    search_pb2.METRIC_L2: "l2",
}
_KIND_IN = {
    search_pb2.INDEX_KIND_UNSPECIFIED: "flat",
    search_pb2.INDEX_KIND_FLAT: "flat",
    search_pb2.INDEX_KIND_HNSW: "hnsw",
    search_pb2.INDEX_KIND_IVF_PQ: "ivf-pq",
}
_METRIC_OUT = {v: k for k, v in _METRIC_IN.items() if k}
_KIND_OUT = {v: k for k, v in _KIND_IN.items() if k}


def set_floats(message: Message, name: str, values: Any) -> None:
    """Sets the ``repeated float`` field ``name`` of ``message`` to ``values`` (any array-like of
    numbers, flattened, as float32) through the field's packed wire form: the vector's float32
    bytes parsed into the field in one step instead of one Python float per value (a 384-d
    vector: about 1.5 µs against 14). Raises ValueError/TypeError for values that are not
    numeric, as ``np.asarray`` does."""
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.type != FieldDescriptor.TYPE_FLOAT or not field.is_repeated:
        raise TypeError(f"{message.DESCRIPTOR.full_name}.{name} is not a repeated float field")
    data = np.ascontiguousarray(values, dtype="<f4").reshape(-1).tobytes()
    message.ClearField(name)
    message.MergeFromString(_varint(field.number << 3 | 2) + _varint(len(data)) + data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


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


def metric_from_proto(value: int) -> Metric:
    from synesthesia.index.types import Metric

    if value not in _METRIC_IN:
        raise InvalidInput(f"unknown metric {value}")
    return Metric(_METRIC_IN[value])  # type: ignore[index]


def index_kind_from_proto(value: int) -> IndexKind:
    from synesthesia.index.types import IndexKind

    if value not in _KIND_IN:
        raise InvalidInput(f"unknown index kind {value}")
    return IndexKind(_KIND_IN[value])  # type: ignore[index]


def config_to_proto(spec: CollectionSpec) -> search_pb2.CollectionConfig:
    return search_pb2.CollectionConfig(
        name=spec.name,
        dim=spec.dim,
        metric=_METRIC_OUT[spec.metric.value],
        index_kind=_KIND_OUT[spec.kind.value],
        index_params=dict(spec.params),
        model_id=spec.model_id,
    )


# -- google.protobuf.Struct <-> dict -----------------------------------------------------------
def _value_to_python(value: struct_pb2.Value, where: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):  # JSON has no NaN or Infinity: a caller's mistake
            raise InvalidInput(f"{where} is {number}; numbers must be finite")
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value, where)
    if kind == "list_value":
        return [_value_to_python(v, f"{where}[{i}]") for i, v in enumerate(value.list_value.values)]
    return None  # null_value or unset


def struct_to_dict(s: struct_pb2.Struct, where: str = "value") -> dict[str, Any]:
    """Numbers come back as floats (JSON semantics, as protobuf's own conversion gives them);
    NaN and infinities are refused with InvalidInput naming the key."""
    return {key: _value_to_python(v, f"{where} {key!r}") for key, v in s.fields.items()}


def dict_to_struct(d: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(dict(d))
    return out


def hits_to_proto(hits: Iterable[Hit], into: Any) -> None:
    """Appends ``hits`` to a repeated QueryHit field (``QueryResponse.hits``), each message
    built in place (no copy into the field). Empty metadata leaves the field unset (it reads as
    an empty Struct)."""
    add = into.add
    for hit in hits:
        modality = _TO_PROTO.get(hit.modality) or modality_to_proto(hit.modality)  # type: ignore[call-overload]
        out = add(id=hit.id, score=hit.score, modality=modality)
        if hit.metadata:
            out.metadata.update(hit.metadata)


def stored_to_proto(item: StoredItem) -> search_pb2.StoredItem:
    out = search_pb2.StoredItem(
        id=item.id,
        modality=modality_to_proto(item.modality),
        metadata=dict_to_struct(item.metadata),
    )
    set_floats(out, "vector", item.vector)
    return out
