"""Domain errors. Each carries the gRPC status code name it maps to, so library code never imports
grpc; the servers' error interceptor turns them into statuses with the message as the details.
Anything that is not a SynesthesiaError becomes INTERNAL with a generic message."""

from __future__ import annotations


class SynesthesiaError(Exception):
    """Base class. ``code`` is the name of a grpc.StatusCode member; ``message`` is the text (on
    the client side: the status details the server sent)."""

    code = "INTERNAL"
    #: The caller's number of the item an error is about, when it names one (set by the clients).
    index: int | None = None

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


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


_BY_CODE: dict[str, type[SynesthesiaError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
    )
}


def error_for_status(code: str, message: str) -> SynesthesiaError:
    """The exception for a status a server answered with (clients use it): ``NOT_FOUND`` ->
    NotFound, …; a code without its own class (CANCELLED, INTERNAL, …) -> a SynesthesiaError
    carrying that code."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else SynesthesiaError(message, code=code)


def item_error(index: int, item_id: str, problem: str) -> InvalidInput:
    """An InvalidInput that names the item: 'item 3 (id 'bark.wav'): not a decodable image …'."""
    label = f"item {index}" + (f" (id {item_id!r})" if item_id else "")
    return InvalidInput(f"{label}: {problem}")
