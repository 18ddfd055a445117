"""Generic calls to the upstream gRPC server, built from method descriptors.

Each method gets a multicallable from ``channel.unary_unary`` / ``channel.unary_stream`` with
the message classes the default symbol database holds for its input and output types, so no
RPC is written by hand and the server's interceptors see HTTP callers as they see gRPC ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message


@dataclass(frozen=True)
class Upstream:
    """How to call one method."""

    path: str  # /package.Service/Method
    request_class: type[Message]
    response_class: type[Message]
    server_streaming: bool
    callable: Any  # grpc.aio.UnaryUnaryMultiCallable | grpc.aio.UnaryStreamMultiCallable


def method_path(method: MethodDescriptor) -> str:
    """The gRPC path of a method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def build_upstream(channel: grpc.aio.Channel, method: MethodDescriptor) -> Upstream:
    """A caller for ``method`` over ``channel`` (unary or server-streaming)."""
    if method.client_streaming:
        raise ValueError(f"{method.full_name}: client streaming is not supported over HTTP")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    path = method_path(method)
    factory = channel.unary_stream if method.server_streaming else channel.unary_unary
    callable_ = factory(
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return Upstream(path, request_class, response_class, method.server_streaming, callable_)
