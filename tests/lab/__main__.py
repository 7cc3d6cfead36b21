"""``python -m tests.lab list|clean [--all]``: see and remove lab namespaces by hand.

``clean`` removes namespaces whose creator process is dead (what every new Lab does
first); ``clean --all`` removes every ``portlib-*`` lab namespace, live ones too.
"""

from __future__ import annotations

import argparse

from tests.lab import netns


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="lab namespaces, their creator pid and whether it lives")
    clean = sub.add_parser("clean", help="delete lab namespaces of dead creators")
    clean.add_argument("--all", action="store_true", help="also those of live creators")
    args = parser.parse_args()
    if args.command == "list":
        for ns in netns.list_namespaces():
            pid = netns.creator_pid(ns)
            if pid is not None:
                state = "alive" if netns.pid_alive(pid) else "dead"
                print(f"{ns}\tcreator {pid} {state}\tprocesses {netns.namespace_pids(ns)}")
    else:
        for ns in netns.clean_stale(everything=args.all):
            print(f"deleted {ns}")


if __name__ == "__main__":
    main()
