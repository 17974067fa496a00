"""Model families behind one factory: ``create_model(name, **kwargs) -> Embedder``."""

from synesthesia.models.embedder import Embedder, ModelInfo, Prepared
from synesthesia.models.registry import create_model, list_models, register_model

__all__ = ["Embedder", "ModelInfo", "Prepared", "create_model", "list_models", "register_model"]
