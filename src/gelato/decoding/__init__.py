"""Speculative decoding core: pure tensor functions for drafting and verification, and the round loop.

No clocks, no network: time and energy are charged by a clock object (``gelato.system``), the
transport wraps a verifier (``gelato.transport``), and the draft length is decided by a policy
(``gelato.policies``).
"""
