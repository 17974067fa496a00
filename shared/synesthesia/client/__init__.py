"""Python clients of the services, sync and asyncio: ``EncoderClient`` (vectors of texts, pictures
and sounds) and ``SearchClient`` (collections, upsert, get, delete, query, classify).

    from synesthesia.client import EncoderClient, Item, SearchClient
    with EncoderClient("localhost:50053") as audio:
        vectors = audio.embed("audio", [Path("bark.wav")])
    with SearchClient("localhost:50054", tls=TLS(ca="certs/ca.pem"), token=token) as search:
        search.ensure_collection("gallery")
        search.upsert("gallery", [Item("dog", data=Path("dog.png"), modality="image")])
        hits = search.query("gallery", audio=Path("bark.wav"), modalities=["image"], k=5)

Every client takes ``tls``/``token`` (else ``SYNESTHESIA_CLIENT_TLS_CA``/``_CERT``/``_KEY`` and
``SYNESTHESIA_TOKEN``), retries UNAVAILABLE and RESOURCE_EXHAUSTED with backoff (``Retry``,
``max_retries``) and waits for a server that is not up yet (``wait_for_ready``) within
``timeout``. A status other than OK is raised as the project's own exception
(``synesthesia.errors``: InvalidInput, NotFound, Unauthenticated, PermissionDenied, Unavailable,
…) with the status code's name in ``code``, the server's message in ``message`` and, for an
item of a batch, its number in the caller's list in ``index``. See docs/sdk.md.
"""

from synesthesia.client._transport import (
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TOKEN,
    TLS,
    Retry,
    rpc_errors,
)
from synesthesia.client.encoder import AsyncEncoderClient, EncoderClient
from synesthesia.client.inputs import Media, media_bytes
from synesthesia.client.search import AsyncSearchClient, SearchClient
from synesthesia.client.types import (
    Collection,
    CollectionInfo,
    Hit,
    Item,
    LabelScore,
    StoredItem,
)

__all__ = [
    "ENV_TLS_CA",
    "ENV_TLS_CERT",
    "ENV_TLS_KEY",
    "ENV_TOKEN",
    "TLS",
    "AsyncEncoderClient",
    "AsyncSearchClient",
    "Collection",
    "CollectionInfo",
    "EncoderClient",
    "Hit",
    "Item",
    "LabelScore",
    "Media",
    "Retry",
    "SearchClient",
    "StoredItem",
    "media_bytes",
    "rpc_errors",
]
