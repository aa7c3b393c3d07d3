"""An OpenAI-compatible HTTP server whose answers come from device-edge speculative decoding.

``gelato api`` serves ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``, ``/health`` and
``/metrics``; see docs/api.md. :func:`gelato.api.app.create_app` builds the ASGI app around a
:class:`gelato.api.backend.Backend`.
"""
