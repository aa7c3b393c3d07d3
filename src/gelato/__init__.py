"""gelato: device-edge collaborative speculative decoding with energy-aware draft-length control.

Notation used throughout: ``p`` is the target model's (processed) next-token distribution,
``q`` the draft model's. A *round* drafts up to ``K`` tokens on the device and verifies them on the
edge in one target forward pass.
"""

__version__ = "0.1.0"
