"""make bench: how long a converge takes on a fresh staging host, and what a no-op costs.

Reports: fresh converge time (bootstrap as root + converge as deploy), no-op re-run time
(`-y`, median of --repeat runs), the floor (`pyinfra <host> exec -- true`), the ratio
no-op/floor, and the number of remote commands a no-op run sends.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from staging import HARNESS, PYINFRA, fresh_converged_host, report, run, timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="trixie", choices=["trixie", "bookworm"])
    parser.add_argument("--name", default="bench")
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 5))
    args = parser.parse_args()

    pyinfra, limit = PYINFRA, ["--limit", args.name]
    try:
        steps = fresh_converged_host(args.name, args.suite)
        # ufw lets one address open 6 SSH connections per 30 s: each measured run comes from an
        # address of its own on the bridge (an empty netns; the network path is the same)
        addresses = iter(range(2, 11))

        def from_probe(command: list[str]) -> list[str]:
            return [HARNESS, "probe", "--addr", str(next(addresses)), "--", *command]

        noop_times = [timed(from_probe([*pyinfra, "deploys/all.py", *limit]))[0] for _ in range(args.repeat)]
        floor_times = [timed(from_probe([*pyinfra, *limit, "exec", "--", "true"]))[0] for _ in range(args.repeat)]
        # -vv prints every remote command (facts included) as "[host] >>> command"
        verbose = run(from_probe([*pyinfra, "deploys/all.py", *limit, "-vv"]))
        remote_commands = sum(1 for line in verbose.stderr.splitlines() if ">>> " in line)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            subprocess.run([HARNESS, "destroy", args.name], capture_output=True)

    noop, floor = statistics.median(noop_times), statistics.median(floor_times)
    figures = {
        "suite": args.suite,
        "host_create_s": round(steps["create"], 2),
        "bootstrap_as_root_s": round(steps["bootstrap"], 2),
        "converge_as_deploy_s": round(steps["converge"], 2),
        "fresh_converge_s": round(steps["bootstrap"] + steps["converge"], 2),
        "noop_rerun_s": round(noop, 2),
        "floor_exec_true_s": round(floor, 2),
        "noop_over_floor": round(noop / floor, 2),
        "noop_remote_commands": remote_commands,
    }
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
