"""Scan this machine's 1000 most common TCP ports and print the open ones with their services.

Run: python examples/scan_localhost.py
(A connect scan needs no privileges; it sends packets only to 127.0.0.1.)
"""

import portlib

# With no ports given, portlib scans nmap's top 1000 TCP ports, as nmap does.
report = portlib.scan("127.0.0.1")

print(f"scanned {report.ports_per_host} ports of 127.0.0.1 in {report.elapsed:.2f}s")
for result in report.open_ports():
    # service is the registered name of the port (IANA/nmap tables), not a probe of it
    print(f"{result.port}/{result.protocol}  {result.state}  {result.service or 'unknown'}")
if not report.open_ports():
    print("no open ports among them")
