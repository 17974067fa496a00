from synesthesia.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Item(_message.Message):
    __slots__ = ("text", "data", "id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    data: bytes
    id: str
    def __init__(self, text: _Optional[str] = ..., data: _Optional[bytes] = ..., id: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "id", "truncated", "windows")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    id: str
    truncated: bool
    windows: int
    def __init__(self, values: _Optional[_Iterable[float]] = ..., id: _Optional[str] = ..., truncated: _Optional[bool] = ..., windows: _Optional[int] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("modality", "items")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    modality: _common_pb2.Modality
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("model_id", "dim", "embeddings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dim: int
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, model_id: _Optional[str] = ..., dim: _Optional[int] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("modality", "items")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    modality: _common_pb2.Modality
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("model_id", "dim", "embeddings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dim: int
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, model_id: _Optional[str] = ..., dim: _Optional[int] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_id", "dim", "modality", "model_modalities", "max_items_per_request", "max_message_bytes", "max_text_tokens", "max_audio_seconds", "max_image_pixels")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dim: int
    modality: _common_pb2.Modality
    model_modalities: _containers.RepeatedScalarFieldContainer[_common_pb2.Modality]
    max_items_per_request: int
    max_message_bytes: int
    max_text_tokens: int
    max_audio_seconds: float
    max_image_pixels: int
    def __init__(self, model_id: _Optional[str] = ..., dim: _Optional[int] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., model_modalities: _Optional[_Iterable[_Union[_common_pb2.Modality, str]]] = ..., max_items_per_request: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_text_tokens: _Optional[int] = ..., max_audio_seconds: _Optional[float] = ..., max_image_pixels: _Optional[int] = ...) -> None: ...
