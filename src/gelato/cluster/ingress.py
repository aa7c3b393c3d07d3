"""The servicer function Serve's gRPC proxy imports (``grpc_servicer_functions``) to learn the edge's methods.

It registers ``gelato.v1.Edge`` with no (de)serializers: the proxy then forwards each message's raw bytes,
and the replica's edge parses them itself, exactly as a single ``gelato serve`` edge does.
"""

from __future__ import annotations

import grpc

from gelato.wire.protocol import SERVICE

SERVICER_FUNCTION = "gelato.cluster.ingress.add_edge_to_server"


def add_edge_to_server(servicer, server) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Generate": grpc.stream_stream_rpc_method_handler(servicer.Generate),
        "Health": grpc.unary_unary_rpc_method_handler(servicer.Health),
        "Metrics": grpc.unary_unary_rpc_method_handler(servicer.Metrics),
    }),))
