"""Domain errors. Each carries the gRPC status code name it maps to, so library code never imports
grpc; the servers' error interceptor turns them into statuses with the message as the details.
Anything that is not a SynesthesiaError becomes INTERNAL with a generic message."""

from __future__ import annotations


class SynesthesiaError(Exception):
    """Base class. ``code`` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"


class InvalidInput(SynesthesiaError):
    """The caller sent something unusable (bad media, wrong modality, bad dimension, …)."""

    code = "INVALID_ARGUMENT"


class NotFound(SynesthesiaError):
    code = "NOT_FOUND"


class AlreadyExists(SynesthesiaError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(SynesthesiaError):
    """The request is well-formed but the system is not in a state to serve it."""

    code = "FAILED_PRECONDITION"


class Unavailable(SynesthesiaError):
    """A dependency (e.g. an encoder service) cannot be reached; retrying later may work."""

    code = "UNAVAILABLE"


class Unauthenticated(SynesthesiaError):
    """No credentials, or credentials the server does not know."""

    code = "UNAUTHENTICATED"


class PermissionDenied(SynesthesiaError):
    """Known credentials whose role does not allow this call."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(SynesthesiaError):
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(SynesthesiaError):
    code = "DEADLINE_EXCEEDED"


def item_error(index: int, item_id: str, problem: str) -> InvalidInput:
    """An InvalidInput that names the item: 'item 3 (id 'bark.wav'): not a decodable image …'."""
    label = f"item {index}" + (f" (id {item_id!r})" if item_id else "")
    return InvalidInput(f"{label}: {problem}")
