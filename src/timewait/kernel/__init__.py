"""The kernel lab: the simulator's scenarios on the running Linux kernel, and a live census.

- :mod:`~timewait.kernel.topology`: namespaces, veth pairs, processes; always torn down.
- :mod:`~timewait.kernel.diag`: sockets and TIME_WAIT countdowns through netlink inet_diag.
- :mod:`~timewait.kernel.counters`: /proc/net/snmp and netstat counters per namespace.
- :mod:`~timewait.kernel.scenarios`: ``timewait kernel run`` scenarios.
- :mod:`~timewait.kernel.compare`: simulator vs kernel, metric by metric, with tolerances.
- :mod:`~timewait.kernel.inspect`: ``timewait inspect``, the census and its advice.
"""
