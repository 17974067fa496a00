"""synesthesia: text, images and audio in one embedding space, served over gRPC."""

from __future__ import annotations

import os

# Never contact a model hub: every weight this package uses ships on disk. These guards live in
# the library itself (not only in tests) so that no import path can start a download.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from synesthesia.errors import (  # noqa: E402
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    SynesthesiaError,
    Unavailable,
)
from synesthesia.modality import Modality  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidInput",
    "Modality",
    "NotFound",
    "SynesthesiaError",
    "Unavailable",
    "__version__",
]
