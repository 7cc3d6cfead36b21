"""The raw-socket engine (``-sS``, ``-sA``, ``-sU``): stateless probing, needs CAP_NET_RAW.

Pure parts: ``wire`` (headers, checksums, patching), ``cookie`` (the keyed
hash a reply must prove), ``replies`` (the one reply parser), ``templates``
and ``templatecache`` (scapy-built probes, cached per machine), ``icmplimit``
(the target's ICMP rate limit), ``bpf`` (the receive filter) and ``routes``.
I/O lives in ``io/`` (raw and packet sockets, the RX and TX rings, the send
workers); ``links`` finds a target's link header; ``scan`` is the loop.
"""
