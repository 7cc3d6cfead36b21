"""The TCP connect engine (``-sT``): non-blocking connects on one epoll, no privileges.

``engine`` drives the scan from asyncio, ``core`` holds the sockets and the
per-probe steps, ``workers`` fans big scans out over forked processes,
``selfconnect`` tells a connection to ourselves from an open port, and
``verdicts`` (pure) says what each errno means.
"""
