"""The TCP connect engine (``-sT``): non-blocking connects on one epoll, no privileges.

``engine`` sizes the scan and drives it from asyncio; ``core`` holds one run's
steps, over ``sockets`` (the pool, the epoll, the error queue), ``probes`` (what
goes next, what is in flight) and ``ledger`` (verdicts and what they teach the
timing); ``workers`` fans big scans out over forked processes; ``selfconnect``
tells a connection to ourselves from an open port; ``verdicts`` (pure) says what
each errno and ICMP error means.
"""
