"""packetdrill-syntax scripts run on the simulated Linux host and on the real kernel.

:mod:`~timewait.script.parse` reads a script into events; :mod:`~timewait.script.engine`
plays them against a :class:`~timewait.script.engine.Stack`, either the simulator
(:mod:`~timewait.script.sim_runner`) or a real kernel behind a TUN device
(:mod:`~timewait.script.kernel_runner`); :mod:`~timewait.script.cli` is
``timewait script``.
"""
