"""``gelato testbed``: the real programs (edge, link emulator, device) as separate, CPU-pinned processes,
measured per policy and held against the modelled clock fed the measured compute costs.

* :mod:`.presets`: link presets (each both a :class:`~gelato.link.proxy.LinkConfig` for the emulator
  and a :class:`~gelato.system.channel.ChannelConfig` for the clock) and named device power profiles;
* :mod:`.device`: the device process (draft model, policies, recording, the modelled replay);
* :mod:`.run`: starts the processes, drives the device over stdin/stdout, assembles the JSON;
* :mod:`.report`: the markdown table and the plot.
"""
