"""Scale-out: many edge replicas behind Ray Serve's gRPC ingress (``gelato cluster``; extra ``.[cluster]``).

- :mod:`~gelato.cluster.replica`: :class:`EdgeReplica`, a Serve deployment hosting a real edge server
- :mod:`~gelato.cluster.ingress`: the servicer function Serve's gRPC proxy registers (raw bytes through)
- :mod:`~gelato.cluster.app`: :class:`ClusterSpec`, the deployment's options (session limit, autoscaling), deploy, status
- :mod:`~gelato.cluster.metrics`: every replica's metrics as Prometheus text labelled by replica
- :mod:`~gelato.cluster.control`: :class:`LocalCluster` (the driver), ``up`` / ``status`` / ``down``
- :mod:`~gelato.cluster.head`: the background process of ``gelato cluster up``

Nothing here imports Ray at module import time except the deployment code paths, so ``gelato cluster``
without the extra fails with one line naming it.
"""
