"""A scan's checkpoint: what a resumed scan needs to go on where this one stopped.

The file is JSON lines. The first line is the header: the scan's own options
(``argv``, opaque here: the CLI's words), its seed and its host-group size, so
that the resumed scan draws the same probe order over the same groups. Each
further line is one finished host group: its index, its hosts (folded, as
``--json`` writes them) and the probes sent so far.

Records are appended, flushed and fsynced, at most every ``SAVE_EVERY_S``
seconds while scanning and once more when the scan ends (Ctrl-C, SIGTERM, or
done). Appending keeps each save as small as a group, however far the scan has
come (rewriting a network-scale checkpoint in full every few seconds would
not). A crash in the middle of an append leaves a last line that is not whole
JSON: the reader stops at the first such line, so a SIGKILL loses at most the
groups finished since the last save.

    >>> saved = load_checkpoint("scan.resume")       # doctest: +SKIP
    >>> saved.groups_done, len(saved.hosts)          # doctest: +SKIP
    (12, 3924)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from portlib.errors import ScanError
from portlib.model import HostResult, ScanReport
from portlib.scanning.options import SavedScan, ScanPlan

FORMAT = "portlib-checkpoint"
VERSION = 1
SAVE_EVERY_S = 2.0
"""Finished groups are saved at least this often (and when the scan ends)."""
MAX_LINE_BYTES = 256 * 2**20  # a line beyond this is not a checkpoint this code wrote


class CheckpointWriter:
    """Appends a scan's finished groups to its checkpoint file."""

    def __init__(
        self,
        path: str,
        *,
        argv: Sequence[str],
        seed: int,
        group_hosts: int,
        started: _dt.datetime,
        resumed: SavedScan | None = None,
    ) -> None:
        self.path = path
        self._pending: list[str] = []
        self._saved_at = time.monotonic()
        try:
            if resumed is None:
                self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (kept open)
                header = {
                    "format": FORMAT,
                    "version": VERSION,
                    "argv": list(argv),
                    "seed": seed,
                    "group_hosts": group_hosts,
                    "started": started.isoformat(),
                }
                self._pending.append(json.dumps(header))
                self.save()
            else:
                _cut_torn_tail(path, resumed)
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        except OSError as exc:
            raise ScanError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from exc

    def group_done(
        self, index: int, hosts: Sequence[HostResult], probes_sent: int, elapsed: float
    ) -> None:
        """Record a finished group and the scan's totals so far; saved now if the last
        save is ``SAVE_EVERY_S`` old."""
        from portlib.output.jsonout import to_plain

        record = {
            "group": index,
            "probes_sent": probes_sent,
            "elapsed": round(elapsed, 6),
            "hosts": to_plain(list(hosts)),
        }
        self._pending.append(json.dumps(record, separators=(",", ":")))
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        if self._pending:
            self._file.write("".join(line + "\n" for line in self._pending))
            self._pending.clear()
            self._file.flush()
            os.fsync(self._file.fileno())
        self._saved_at = time.monotonic()

    def close(self) -> None:
        try:
            self.save()
        finally:
            self._file.close()


def load_checkpoint(path: str) -> SavedScan:
    """The scan saved in ``path``; ScanError when it is not a checkpoint."""
    from portlib.output.jsonload import read_json_host

    try:
        with open(path, "rb") as file:
            lines = file.read().split(b"\n")
    except OSError as exc:
        raise ScanError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from exc
    header = _line(lines[0]) if lines else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ScanError(f"{path} is not a portlib checkpoint")
    if header.get("version") != VERSION:
        raise ScanError(f"{path} is a checkpoint of another portlib version")
    try:
        argv = tuple(str(word) for word in header["argv"])
        seed, group_hosts = int(header["seed"]), int(header["group_hosts"])
        started = _dt.datetime.fromisoformat(header["started"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ScanError(f"{path}: the checkpoint's header is damaged ({exc})") from None
    hosts: list[HostResult] = []
    probes, done, elapsed = 0, 0, 0.0
    for raw in lines[1:]:
        record = _line(raw)
        if not isinstance(record, dict) or record.get("group") != done:
            break  # a torn last line (the scan was killed while saving), or the end
        try:
            hosts += [read_json_host(h, path) for h in record["hosts"]]
            probes, elapsed = int(record["probes_sent"]), float(record["elapsed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ScanError(f"{path}: group {done} of the checkpoint is damaged ({exc})") from None
        done += 1
    return SavedScan(argv, seed, group_hosts, started, done, tuple(hosts), probes, elapsed)


def _line(raw: bytes) -> Any:
    if not raw or len(raw) > MAX_LINE_BYTES:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _cut_torn_tail(path: str, saved: SavedScan) -> None:
    """Drop whatever follows the header and the ``saved.groups_done`` whole records
    (a torn line), so the records appended next follow on."""
    with open(path, "rb+") as file:
        keep = 0
        for _ in range(saved.groups_done + 1):
            line = file.readline()
            if not line.endswith(b"\n"):
                break
            keep += len(line)
        file.truncate(keep)


class ScanCheckpoints:
    """A scan's resumption and checkpoints, as the Scanner drives them: which groups
    the scan starts from and how large they are, and each finished group saved."""

    def __init__(
        self,
        path: str | None,
        resume: SavedScan | None,
        plan: ScanPlan,
        *,
        argv: Sequence[str],
        target_count: int,
        started: _dt.datetime,
    ) -> None:
        from portlib.scanning.groups import checkpointed_group_size

        self.resume = resume
        if resume is not None:
            self.group_hosts, self.first_group = resume.group_hosts, resume.groups_done
        else:
            shards = plan.shard[1] if plan.shard else 1
            probes_total = target_count * plan.ports_per_host // shards
            self.group_hosts = checkpointed_group_size(plan.ports_per_host, probes_total)
            self.first_group = 0
        self.started = resume.started if resume is not None else started
        self.probes_before = resume.probes_sent if resume is not None else 0
        self.elapsed_before = resume.elapsed if resume is not None else 0.0
        self.writer = None
        if path is not None:
            self.writer = CheckpointWriter(
                path,
                argv=argv,
                seed=plan.seed,
                group_hosts=self.group_hosts,
                started=self.started,
                resumed=resume,
            )

    @property
    def saved_hosts(self) -> tuple[HostResult, ...]:
        return self.resume.hosts if self.resume is not None else ()

    def group_done(self, index: int, hosts: Sequence[HostResult], so_far: ScanReport) -> None:
        """Save a finished group, with the totals of ``so_far`` (the scan's report)."""
        if self.writer is not None:
            self.writer.group_done(index, hosts, so_far.probes_sent, so_far.elapsed)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def resumed_seed(seed: int | None, resume: SavedScan | None) -> int | None:
    """A resumed scan draws its saved probe order: its seed, or an error for another."""
    if resume is None:
        return seed
    if seed is not None and seed != resume.seed:
        raise ScanError(f"the scan being resumed has seed {resume.seed}, not {seed}")
    return resume.seed
