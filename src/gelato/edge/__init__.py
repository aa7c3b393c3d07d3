"""The edge server (``gelato serve``): verifies the rounds of many devices' generations with the target.

- :mod:`.server`: :class:`EdgeConfig`, :class:`EdgeServer` (builds and runs the edge); :mod:`.service`: its
  gRPC handlers (one ``Generate`` stream per generation, Health, Metrics)
- :mod:`.rounds`: the Open and round rules; :mod:`.sessions`: sessions and quotas; :mod:`.worker`: the model
  thread (batched rounds, chunked prefill, each round committed by :class:`gelato.decoding.types.RoundCommit`)
- :mod:`.process`: :class:`EdgeServerThread`, :func:`build_edge_server`, :func:`serve`; :mod:`.stats` and
  :mod:`.prometheus`: its metrics
"""
