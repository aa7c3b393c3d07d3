"""What crosses the link and how both programs speak it: the protobuf messages (``wire.proto``, regenerate with
``python scripts/gen_proto.py``), the payload modes and their size in bits (``wire.payload``), the codec
(``wire.codec``), the errors (``wire.errors``), the tokenizer fingerprint (``wire.fingerprint``), and the gRPC
plumbing the edge and the device share: TLS and bearer tokens (``wire.auth``) and the background event loop
the edge, the link emulator and the tests run on (``wire.aio``)."""
