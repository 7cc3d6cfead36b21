"""Real Debian daemons for the service-detection lab, started inside a target namespace.

Each daemon gets a configuration written here into a private directory and runs in the
foreground in its own process group; ``DaemonSet.stop()`` (and the Lab's teardown, which
kills everything left in its namespaces) ends them. Every service also answers on an
unusual port: an iptables REDIRECT in the target namespace sends that port to the
daemon's standard one, so the detector sees the real daemon where the registry names
something else.

>>> daemons = DaemonSet(host)  # doctest: +SKIP
>>> daemons.start_all()  # doctest: +SKIP
>>> daemons.tcp_ports()  # doctest: +SKIP
{22: 'ssh', 2222: 'ssh', ...}
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab.netns import LabError, kill_group, ns_argv

if TYPE_CHECKING:
    from tests.lab.core import LabHost


@dataclass(frozen=True)
class Daemon:
    """One lab service: its binary, standard port(s), the unusual port, nmap's name."""

    key: str
    binary: str
    protocol: str  # "tcp" or "udp"
    port: int
    unusual: int
    service: str  # nmap's service name for it
    tunnel: str | None = None


DAEMONS: tuple[Daemon, ...] = (
    Daemon("sshd", "/usr/sbin/sshd", "tcp", 22, 2222, "ssh"),
    Daemon("nginx", "/usr/sbin/nginx", "tcp", 80, 8081, "http"),
    Daemon("nginx-tls", "/usr/sbin/nginx", "tcp", 443, 8444, "http", tunnel="ssl"),
    Daemon("vsftpd", "/usr/sbin/vsftpd", "tcp", 21, 2121, "ftp"),
    Daemon("exim", "/usr/sbin/exim4", "tcp", 25, 2525, "smtp"),
    Daemon("redis", "/usr/bin/redis-server", "tcp", 6379, 16379, "redis"),
    Daemon("postgres", "/usr/lib/postgresql/15/bin/postgres", "tcp", 5432, 15432, "postgresql"),
    Daemon("dnsmasq", "/usr/sbin/dnsmasq", "tcp", 53, 5300, "domain"),
    Daemon("dnsmasq-udp", "/usr/sbin/dnsmasq", "udp", 53, 5300, "domain"),
    Daemon("snmpd", "/usr/sbin/snmpd", "udp", 161, 1161, "snmp"),
    Daemon("memcached", "/usr/bin/memcached", "tcp", 11211, 21211, "memcached"),
    Daemon("mosquitto", "/usr/sbin/mosquitto", "tcp", 1883, 11883, "mqtt"),
    Daemon("dovecot-imap", "/usr/sbin/dovecot", "tcp", 143, 10143, "imap"),
    Daemon("dovecot-pop3", "/usr/sbin/dovecot", "tcp", 110, 10110, "pop3"),
    Daemon("lighttpd", "/usr/sbin/lighttpd", "tcp", 8080, 18080, "http"),
    Daemon("slapd", "/usr/sbin/slapd", "tcp", 389, 10389, "ldap"),
    Daemon("ntpd", "/usr/sbin/ntpd", "udp", 123, 1123, "ntp"),
)


_SUBJECT = "/CN=lab.example/O=portlib lab"


def missing_daemons() -> list[str]:
    """Binaries of DAEMONS not installed here (tools/ci-deps.sh installs them)."""
    return sorted({d.binary for d in DAEMONS if not os.access(d.binary, os.X_OK)})


class DaemonSet:
    """Starts the lab's daemons in ``host``'s namespace; ``stop()`` ends them and removes
    their directory."""

    def __init__(self, host: LabHost):
        self.host = host
        # its own directory under /tmp, open to the daemons' users (pytest's are not)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{host.ns}-daemons-"))
        os.chmod(self.dir, 0o755)
        self._procs: list[subprocess.Popen[bytes]] = []
        self.started: list[Daemon] = []

    # --- running ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str], *, user: str | None = None) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.Popen(
            ns_argv(self.host.ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.dir,
            start_new_session=True,
        )
        log.close()
        self._procs.append(proc)

    def _wait_listening(self, daemons: Sequence[Daemon], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        want = {(d.protocol, d.port) for d in daemons}
        while True:
            have = self._listening()
            if want <= have:
                return
            if time.monotonic() > deadline:
                logs = {
                    p.name: p.read_text(errors="replace")[-400:] for p in self.dir.glob("*.log")
                }
                raise LabError(f"daemons not listening on {sorted(want - have)}: {logs}")
            time.sleep(0.05)

    def _listening(self) -> set[tuple[str, int]]:
        out = self.host.exec(["ss", "-Hltun"]).stdout
        found: set[tuple[str, int]] = set()
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 5:
                found.add((fields[0], int(fields[4].rsplit(":", 1)[1])))
        return found

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                kill_group(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
            kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
        self._procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_all(self, keys: Sequence[str] | None = None) -> list[Daemon]:
        """Start the daemons (all, or those named by ``keys``), redirect the unusual
        ports, and wait until every one listens."""
        chosen = [d for d in DAEMONS if keys is None or d.key in keys]
        starters: dict[str, Callable[[], None]] = {
            "sshd": self._sshd,
            "nginx": self._nginx,
            "vsftpd": self._vsftpd,
            "exim": self._exim,
            "redis": self._redis,
            "postgres": self._postgres,
            "dnsmasq": self._dnsmasq,
            "snmpd": self._snmpd,
            "memcached": self._memcached,
            "mosquitto": self._mosquitto,
            "dovecot": self._dovecot,
            "lighttpd": self._lighttpd,
            "slapd": self._slapd,
            "ntpd": self._ntpd,
        }
        done: set[str] = set()
        for daemon in chosen:
            base = daemon.key.split("-")[0]
            if base not in done:
                starters[base]()
                done.add(base)
        self._redirect(chosen)
        self._wait_listening(chosen)
        self.started = chosen
        return chosen

    def _redirect(self, daemons: Sequence[Daemon]) -> None:
        for d in daemons:
            for tables in (self.host.iptables, self.host.ip6tables):
                tables(
                    "-t", "nat", "-A", "PREROUTING", "-p", d.protocol, "--dport", str(d.unusual),
                    "-j", "REDIRECT", "--to-ports", str(d.port),
                )  # fmt: skip

    def _write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    # --- one method per daemon ------------------------------------------------------------

    def _sshd(self) -> None:
        key = self.dir / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        cfg = self._write(
            "sshd_config",
            f"Port 22\nHostKey {key}\nPidFile {self.dir}/sshd.pid\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        )
        self._spawn("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)])

    def certificate(self) -> tuple[Path, Path]:
        """A self-signed certificate and its key for lab.example (made once per set)."""
        cert, key = self.dir / "lab.crt", self.dir / "lab.key"
        if not cert.exists():
            subprocess.run(
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-keyout", str(key), "-out", str(cert), "-subj", _SUBJECT,
                    "-addext", "subjectAltName=DNS:lab.example,DNS:www.lab.example,IP:192.0.2.10",
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
        return cert, key

    def _nginx(self) -> None:
        cert, key = self.certificate()
        root = self.dir / "www"
        root.mkdir(exist_ok=True)
        (root / "index.html").write_text("<html><head><title>portlib lab</title></head></html>\n")
        d = self.dir
        cfg = self._write(
            "nginx.conf",
            f"""user root; worker_processes 1; pid {d}/nginx.pid; error_log {d}/nginx.err;
events {{ worker_connections 256; }}
http {{
  access_log off; client_body_temp_path {d}/nb; proxy_temp_path {d}/np;
  fastcgi_temp_path {d}/nf; uwsgi_temp_path {d}/nu; scgi_temp_path {d}/ns;
  server {{ listen 80; listen [::]:80; listen 443 ssl; listen [::]:443 ssl;
    ssl_certificate {cert}; ssl_certificate_key {key}; root {root}; }}
}}
""",
        )
        self._spawn("nginx", ["/usr/sbin/nginx", "-c", str(cfg), "-g", "daemon off;"])

    def _vsftpd(self) -> None:
        cfg = self._write(
            "vsftpd.conf",
            "listen=YES\nlisten_port=21\nbackground=NO\nanonymous_enable=NO\nlocal_enable=NO\n"
            "write_enable=NO\nseccomp_sandbox=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\n"
            "pam_service_name=vsftpd\n",
        )
        os.chmod(cfg, 0o600)
        self._spawn("vsftpd", ["/usr/sbin/vsftpd", str(cfg)])

    def _exim(self) -> None:
        spool = self.dir / "exim-spool"
        spool.mkdir(exist_ok=True)
        logs = self.dir / "exim-log"
        logs.mkdir(exist_ok=True)
        for path in (spool, logs):
            shutil.chown(path, "Debian-exim", "Debian-exim")
        cfg = self._write(
            "exim.conf",
            f"spool_directory = {spool}\nlog_file_path = {logs}/%slog\n"
            "daemon_smtp_ports = 25\nlocal_interfaces = 0.0.0.0\nkeep_environment =\n"
            "primary_hostname = mail.lab.example\nrfc1413_query_timeout = 0s\n"
            "host_lookup = \nacl_smtp_rcpt = deny_all\nbegin acl\ndeny_all:\n  deny\n",
        )
        os.chmod(cfg, 0o644)
        self._spawn("exim", ["/usr/sbin/exim4", "-C", str(cfg), "-bdf", "-q30m"])

    def _redis(self) -> None:
        self._spawn(
            "redis",
            [
                "/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0 ::",
                "--protected-mode", "no", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir),
            ],
        )  # fmt: skip

    def _postgres(self) -> None:
        data = self.dir / "pgdata"
        if not (data / "PG_VERSION").exists():
            data.mkdir(exist_ok=True)
            shutil.chown(data, "postgres", "postgres")
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/initdb",
                 "-D", str(data), "-A", "reject", "--no-sync"],
                check=True, capture_output=True,
            )  # fmt: skip
        self._spawn(
            "postgres",
            ["/usr/lib/postgresql/15/bin/postgres", "-D", str(data), "-p", "5432",
             "-c", "listen_addresses=*", "-c", f"unix_socket_directories={data}"],
            user="postgres",
        )  # fmt: skip

    def _dnsmasq(self) -> None:
        cfg = self._write(
            "dnsmasq.conf",
            "port=53\nno-resolv\nno-hosts\nno-daemon\nuser=root\n"
            f"pid-file={self.dir}/dnsmasq.pid\naddress=/lab.example/192.0.2.10\n",
        )
        self._spawn("dnsmasq", ["/usr/sbin/dnsmasq", "-k", "-C", str(cfg)])

    def _snmpd(self) -> None:
        cfg = self._write(
            "snmpd.conf",
            "rocommunity public default\nrocommunity6 public default\n"
            "sysLocation portlib lab\nsysContact lab@lab.example\n",
        )
        self._spawn(
            "snmpd",
            ["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(cfg), "-p", f"{self.dir}/snmpd.pid",
             "udp:161,udp6:161"],
        )  # fmt: skip

    def _memcached(self) -> None:
        self._spawn("memcached", ["/usr/bin/memcached", "-u", "root", "-p", "11211", "-U", "0"])

    def _mosquitto(self) -> None:
        cfg = self._write("mosquitto.conf", "listener 1883\nallow_anonymous true\n")
        self._spawn("mosquitto", ["/usr/sbin/mosquitto", "-c", str(cfg)])

    def _dovecot(self) -> None:
        base = self.dir / "dovecot-run"
        base.mkdir(exist_ok=True)
        cfg = self._write(
            "dovecot.conf",
            f"protocols = imap pop3\nlisten = *, ::\nbase_dir = {base}\nssl = no\n"
            "log_path = /dev/stderr\nmail_location = mbox:/nonexistent\n"
            "passdb {\n  driver = static\n  args = nopassword=no\n}\n"
            "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n",
        )
        self._spawn("dovecot", ["/usr/sbin/dovecot", "-F", "-c", str(cfg)])

    def _lighttpd(self) -> None:
        root = self.dir / "lighttpd-www"
        root.mkdir(exist_ok=True)
        cfg = self._write(
            "lighttpd.conf",
            f'server.document-root = "{root}"\nserver.port = 8080\n'
            'server.bind = "0.0.0.0"\n$SERVER["socket"] == "[::]:8080" { }\n'
            f'server.pid-file = "{self.dir}/lighttpd.pid"\n',
        )
        self._spawn("lighttpd", ["/usr/sbin/lighttpd", "-D", "-f", str(cfg)])

    def _slapd(self) -> None:
        cfg = self._write(
            "slapd.conf",
            "include /etc/ldap/schema/core.schema\n"
            f"pidfile {self.dir}/slapd.pid\nargsfile {self.dir}/slapd.args\n",
        )
        self._spawn("slapd", ["/usr/sbin/slapd", "-d", "0", "-f", str(cfg), "-h", "ldap:///"])

    def _ntpd(self) -> None:
        cfg = self._write("ntp.conf", f"driftfile {self.dir}/ntp.drift\n")
        self._spawn("ntpd", ["/usr/sbin/ntpd", "-n", "-c", str(cfg)])
