"""The synesthesia services as a Ray Serve application: one deployment per encoder and the search
service as hash-routed shards behind a router, all served by Ray Serve's gRPC proxy with the same
protos as the standalone services (clients change their target and add ``application`` metadata
when several applications share the proxy)."""
