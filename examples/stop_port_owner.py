"""Find the process holding a port and stop it: ``lsof -i :PORT`` then ``fuser -k PORT/tcp``.

Run: python examples/stop_port_owner.py
It starts its own child server (so it never stops anything it did not start),
finds it with who_uses(), and stops it with kill_port().
"""

import subprocess
import sys

import portlib

# A child server on a port the kernel picks; it prints the port once it listens.
SERVER = """
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""
child = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
port = int(child.stdout.readline())

# Who holds the port? Every socket on it, each with every process holding it.
for sock in portlib.who_uses(port):
    for owner in sock.owners:
        print(f"{sock.local} {sock.state} is held by PID {owner.pid} ({owner.name}), fd {owner.fd}")

# Stop it (SIGTERM by default); kill_port returns the processes it signalled.
stopped = portlib.kill_port(port)
print("signalled:", ", ".join(f"{p.name} (PID {p.pid})" for p in stopped))
print("child exited with", child.wait(timeout=10))  # -15: ended by SIGTERM
print("port free again:", portlib.is_port_free(port, host="127.0.0.1"))
