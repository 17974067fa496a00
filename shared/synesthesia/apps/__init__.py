"""The applications built on the library, each module with one job:

- ``cli``: the ``synesthesia`` command (serve, embed, index, search, demo, ui, train, convert)
- ``search_cli``: ``synesthesia index`` and ``synesthesia search``
- ``indexing``: a folder of pictures, sounds and texts into a collection (index and demo share it)
- ``gallery``: the demo's sample gallery (Tux Paint's stamps from Debian)
- ``demo`` / ``demo_queries``: ``synesthesia demo`` and its four cross-modal queries
- ``stack``: the local stack as processes on loopback
- ``healthcheck``: ``python -m synesthesia.apps.healthcheck HOST:PORT`` (compose, Ray profile)
- ``ui``: the search page

They talk to the services only through ``synesthesia.client`` (EncoderClient, SearchClient) and
``synesthesia.health``."""
