"""What crosses the link: the protobuf messages (``wire.proto``, regenerate with ``python scripts/gen_proto.py``)
and the payload modes and their size in bits (``wire.payload``)."""
