"""Model registry and factory (timm-style): families register a constructor under a name;
``create_model(name, **kwargs)`` is the only way in."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from synesthesia.errors import InvalidInput

if TYPE_CHECKING:
    from synesthesia.models.embedder import Embedder

_REGISTRY: dict[str, Callable[..., Embedder]] = {}

# Family modules are imported on first use so that `import synesthesia` stays light and a service
# never imports a family it does not serve.
_FAMILY_MODULES = (
    "synesthesia.models.minilm",
    "synesthesia.models.imagebind",
)

F = TypeVar("F", bound=Callable[..., "Embedder"])


def register_model(name: str) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _load_families() -> None:
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside the family
                raise


def list_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> Embedder:
    """Build a model by registry name, e.g. ``create_model("synesthesia-minilm")``.

    Common keyword arguments: ``modalities`` (load only these modalities' weights),
    ``checkpoint`` (a local weights path), ``device``. Unknown names raise InvalidInput.
    """
    if name not in _REGISTRY:
        _load_families()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise InvalidInput(f"unknown model {name!r}; registered models: {known}") from None
    return factory(**kwargs)
