"""Exposure audit: which listening services every interface can reach, and which only
this machine (loopback), with the owning user and process and the port's service name.

Run: python examples/exposure_audit.py   (as root to see every owner)
"""

import portlib


def exposure(sock: portlib.Socket) -> str:
    """Where a listening socket can be reached from, judged by its local address."""
    address = sock.local.address
    if address.is_unspecified:  # 0.0.0.0 or :: -- every interface, the network included
        return "ALL interfaces"
    if address.is_loopback:
        return "loopback only"
    return f"only {address}"


rows = []
for sock in portlib.listening("inet"):
    if sock.protocol not in (portlib.Protocol.TCP, portlib.Protocol.UDP):
        continue
    service = portlib.service_name(sock.local.port, sock.protocol) or "unknown"
    owners = ", ".join(f"{o.name}[{o.pid}] as {o.user}" for o in sock.owners) or "(owner hidden)"
    rows.append((exposure(sock), f"{sock.local.port}/{sock.protocol}", service, owners))

# The exposed ones first: those are the ones to question.
order = {"ALL interfaces": 0}
rows.sort(key=lambda r: (order.get(r[0], 1), r[0], r[1]))
print(f"{'EXPOSURE':<16}{'PORT':<12}{'SERVICE':<16}OWNER")
for row in rows:
    print(f"{row[0]:<16}{row[1]:<12}{row[2]:<16}{row[3]}")
exposed = sum(1 for r in rows if r[0] == "ALL interfaces")
print(f"{exposed} of {len(rows)} listening sockets accept connections on every interface")
