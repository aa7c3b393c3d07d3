"""What the edge and the device share to talk gRPC: TLS and bearer tokens (:mod:`.auth`) and the background
event loop the edge, the link emulator and the tests run on (:mod:`.aio`). The wire format itself (messages,
codec, errors, fingerprint) is :mod:`gelato.wire`; the three programs are :mod:`gelato.edge`,
:mod:`gelato.device` and :mod:`gelato.link`."""
