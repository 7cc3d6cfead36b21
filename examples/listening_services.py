"""``ss -tulp`` in ten lines: listening TCP and UDP sockets with their processes.

Run: python examples/listening_services.py   (as root to see every process)
"""

import portlib

print(f"{'Netid':<6}{'State':<8}{'Local Address:Port':<28}{'Service':<14}Process")
for s in sorted(portlib.listening("inet"), key=lambda s: (s.protocol, s.local.port)):
    if s.protocol not in (portlib.Protocol.TCP, portlib.Protocol.UDP):
        continue  # raw sockets have no port
    name = portlib.service_name(s.local.port, s.protocol) or ""
    users = ",".join(f'("{o.name}",pid={o.pid},fd={o.fd})' for o in s.owners)
    print(f"{s.protocol:<6}{s.state:<8}{s.local!s:<28}{name:<14}{users}")
