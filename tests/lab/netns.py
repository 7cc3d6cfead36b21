"""Namespace plumbing for the test lab: thin wrappers around `ip`, `iptables` and `sysctl`.

Every helper runs one subprocess and raises :class:`LabError` naming the command and
its stderr when it fails, so a broken lab says exactly which step broke. Nothing here
creates links, addresses or routes in the root namespace: commands either run inside
a namespace (``ip -n NS ...``, ``ip netns exec NS ...``) or only add/delete the
namespace itself.

Namespaces are named ``portlib-<creator pid>-<random>-<role>``; :func:`clean_stale`
deletes the ones whose creator is dead (and kills whatever still runs in them), and
never touches namespaces of a live process, so several test runs can share a machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

PREFIX = "portlib-"
_NAME_RE = re.compile(r"^portlib-(\d+)-([0-9a-z]+)-([0-9a-z]+)$")
_TIMEOUT_S = 30.0


class LabError(RuntimeError):
    """A lab step failed; the message names the command and what it printed."""


class LabTimeout(LabError, TimeoutError):
    """A lab command or call ran past its time limit."""


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float = _TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise LabError with the command and its output when it fails."""
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=env
        )
    except FileNotFoundError as exc:
        raise LabError(f"lab command not found: {argv[0]} ({' '.join(argv)})") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabTimeout(f"lab command timed out after {timeout:g} s: {' '.join(argv)}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        extra = f"\n--- input ---\n{stdin.strip()}" if stdin else ""
        raise LabError(
            f"lab command failed (exit {proc.returncode}): {' '.join(argv)}\n{detail}{extra}"
        )
    return proc


# --- names -------------------------------------------------------------------------------


def new_lab_id() -> str:
    """``portlib-<pid>-<random>``: the prefix shared by all namespaces of one lab."""
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"


def creator_pid(name: str) -> int | None:
    """The pid encoded in a lab namespace name, or None when it is not one of ours."""
    match = _NAME_RE.match(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# --- namespaces --------------------------------------------------------------------------


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    # Lines look like "name" or "name (id: 3)".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    """Pids of processes whose network namespace is ``ns``."""
    try:
        out = run(["ip", "netns", "pids", ns]).stdout
    except LabError:
        return []  # already gone
    return [int(tok) for tok in out.split() if tok.isdigit()]


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])


def kill_pids(pids: Iterable[int], *, grace_s: float = 1.0) -> None:
    """SIGTERM each pid (and its process group when it leads one), then SIGKILL survivors."""
    pids = [p for p in pids if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            _signal(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 0.5)
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p) and not _is_zombie(p)]
            if not pids:
                return
            time.sleep(0.02)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group (a helper and anything it spawned); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def delete_namespace(ns: str) -> None:
    """Kill what still runs in ``ns``, then delete it. Missing namespaces are fine."""
    kill_pids(namespace_pids(ns))
    proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
    if proc.returncode != 0 and os.path.exists(f"/run/netns/{ns}"):
        raise LabError(f"lab command failed: ip netns del {ns}\n{proc.stderr.strip()}")


def clean_stale(*, everything: bool = False) -> list[str]:
    """Delete ``portlib-*`` namespaces whose creator pid is dead (all of ours if ``everything``).

    Returns the names deleted. Namespaces of live processes are left alone: another test
    run may be using them.
    """
    removed = []
    for ns in list_namespaces():
        pid = creator_pid(ns)
        if pid is None:
            continue
        if everything or not pid_alive(pid):
            delete_namespace(ns)
            removed.append(ns)
    return removed


# --- commands inside a namespace ---------------------------------------------------------


def ip_batch(ns: str, lines: Sequence[str]) -> None:
    """Run several ``ip`` commands inside ``ns`` with one process (``ip -batch``)."""
    run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def ns_run(
    ns: str, argv: Sequence[str], *, stdin: str | None = None, timeout: float = _TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return run(ns_argv(ns, argv), stdin=stdin, timeout=timeout)


def sysctl(ns: str, settings: dict[str, str]) -> None:
    """Set sysctls inside ``ns`` (network sysctls are per namespace).

    Written to /proc/sys by ``sh`` rather than with the ``sysctl`` tool, which minimal
    images lack (procps)."""
    if not settings:
        return
    args = []
    for key, value in settings.items():
        args += ["/proc/sys/" + key.replace(".", "/"), value]
    script = 'while [ $# -gt 0 ]; do printf "%s\\n" "$2" > "$1" || exit 1; shift 2; done'
    ns_run(ns, ["sh", "-c", script, "sysctl", *args])


def iptables_restore(ns: str, family: int, rules: Sequence[str]) -> None:
    """Append ``rules`` (``-A CHAIN ...`` lines) to the filter table in one call."""
    if not rules:
        return
    tool = "iptables-restore" if family == 4 else "ip6tables-restore"
    text = "*filter\n" + "\n".join(rules) + "\nCOMMIT\n"
    ns_run(ns, [tool, "-w", "--noflush"], stdin=text)
