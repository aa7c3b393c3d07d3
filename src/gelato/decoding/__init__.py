"""Speculative decoding's rules and records: pure tensor functions for drafting and verification, the commit
and seed rules, the payload vocabulary, the proposer and policy interfaces. The round loop is ``gelato.generation``.

No clocks, no network: time and energy are charged by a clock object (``gelato.system``), the device's
client is a verifier (``gelato.device``), and the draft length is decided by a policy (``gelato.policies``).
"""
