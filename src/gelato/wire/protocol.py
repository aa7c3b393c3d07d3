"""Names of the gRPC service and its methods, shared by the edge and the device (neither imports the other)."""

from __future__ import annotations

SERVICE = "gelato.v1.Edge"
GENERATE = f"/{SERVICE}/Generate"  # bidirectional stream: one per generation
HEALTH = f"/{SERVICE}/Health"
METRICS = f"/{SERVICE}/Metrics"
