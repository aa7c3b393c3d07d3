"""The device side of the link (``gelato device``): :mod:`.edge_client` (:class:`EdgeClient`, a gRPC channel
to an edge) and :mod:`.client` (:class:`RemoteVerifier`, the round loop's verifier over one edge stream,
with resume, backoff and deadlines)."""
