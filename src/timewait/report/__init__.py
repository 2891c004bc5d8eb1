"""Views of a run: pure functions of a :class:`~timewait.result.RunResult` and its trace.

Nothing here drives the simulator (``report`` never imports ``timewait.sim``):
every table, capture, diagram, plot and page is rebuilt from the structured
trace (:mod:`timewait.trace`) and the result's metadata.

- :mod:`.tcpdump`  -- one trace record as a tcpdump-style text line
- :mod:`.sockets`  -- socket tables reconstructed from STATE/TIMER records
- :mod:`.ss`       -- ``ss -tan -o`` tables and TIME_WAIT summaries at a time T
- :mod:`.console`  -- the Rich terminal report of ``timewait run``
- :mod:`.pcap`     -- classic pcap files of the real packet bytes
- :mod:`.ladder`   -- ladder (sequence) diagrams as SVG, and Mermaid text
- :mod:`.plots`    -- PNG plots of sockets, ports and connection outcomes
- :mod:`.html`     -- one self-contained HTML page per run
- :mod:`.outputs`  -- the ``--pcap/--diagram/--plot/--html`` files, written atomically
- :mod:`.statediagram` and :mod:`.cli` -- ``timewait diagram --states``
"""
