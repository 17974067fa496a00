"""Server reflection under both names clients use: ``grpc.reflection.v1alpha`` (what
grpcio-reflection serves) and ``grpc.reflection.v1`` (what current grpcurl, Postman and
grpc-java ask first). The two protocols are the same messages under another package, so one
servicer answers both: v1 is registered with v1alpha's (de)serialisers, which read and write the
same bytes, and v1's file descriptor (v1alpha's with the package renamed) is added to the pool so
that clients can reflect on the reflection service itself."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE = reflection.SERVICE_NAME
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto, renamed into package grpc.reflection.v1."""
    fdp = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(fdp)
    old, new = f".{fdp.package}.", f".{V1_PACKAGE}."
    fdp.name, fdp.package = _V1_FILE, V1_PACKAGE
    fdp.ClearField("options")
    for message in fdp.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in fdp.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return fdp


def _ensure_v1_in_pool() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.Add(v1_file_descriptor())


def enable_reflection(service_names: Sequence[str], server: aio.Server) -> None:
    """Reflection v1alpha and v1 for ``service_names`` (plus both reflection services)."""
    _ensure_v1_in_pool()
    names = (*service_names, V1ALPHA_SERVICE, V1_SERVICE)
    servicer = reflection.aio.ReflectionServicer(names)
    for service in (V1ALPHA_SERVICE, V1_SERVICE):
        handler = grpc.method_handlers_generic_handler(
            service,
            {
                "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                    servicer.ServerReflectionInfo,
                    request_deserializer=v1alpha.ServerReflectionRequest.FromString,
                    response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
