"""The device side of the link (``gelato device``): :mod:`.edge_client` (:class:`EdgeClient`, a gRPC channel
to an edge), :mod:`.client` (:class:`RemoteVerifier`, the round loop's verifier over one edge stream,
with resume, backoff and deadlines, reporting each round's :class:`~gelato.decoding.types.RoundMeasurement`)
and :mod:`.pair` (:func:`remote_pair`, the one assembly of the proposer and the remote verifier)."""
