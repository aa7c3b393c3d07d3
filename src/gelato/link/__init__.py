"""The link emulator (``gelato link``): :mod:`.proxy` (:class:`LinkEmulator`, a user-space rate, delay, fading
and loss TCP proxy between device and edge) and :mod:`.h2frames` (what it reads of HTTP/2 framing)."""
