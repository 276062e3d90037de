#!/usr/bin/env python3
"""Compares `strata plan --json` with the memory_r<RANK>.json files `strata train` wrote.

usage: plan_compare.py PLAN.json RUN_DIR NAME [--table]

Every rank, every category: |predicted - measured| <= 10% of measured, or <= 64 KiB for a
category under 1 MiB measured (a small buffer's page rounding or a 64-byte alignment is a large
fraction of a tiny category and nothing of a rank's memory). Communication per axis: equal
(the counters are deterministic). Nothing here depends on timing: pipeline sends are released
where the schedule proves them received, and a swap save waits for the writes beyond
offload.writes_in_flight sets. Only with more than one set in flight (io_slow above
peak_bytes.io) does io depend on the device's speed; then the measured io and total must lie in
the range `strata plan` gives (peak_bytes: a device that keeps up; io_slow, total_slow: one
that does not), with 10% margins.
Prints one line per rank and category with --table.
"""
import json
import os
import sys

CATS = ["params", "grads", "optimizer", "activations", "comm", "io", "other", "total"]
FLOOR = 64 * 1024


def main():
    plan_path, run_dir, name = sys.argv[1:4]
    table = "--table" in sys.argv
    plan = json.load(open(plan_path))
    bad = []
    for r in plan["ranks"]:
        path = os.path.join(run_dir, "memory_r%05d.json" % r["rank"])
        if not os.path.exists(path):
            bad.append("%s: rank %d: no %s" % (name, r["rank"], path))
            continue
        got = json.load(open(path))
        ranged = r["io_slow"] > r["peak_bytes"]["io"]
        for c in CATS:
            p, m = r["peak_bytes"][c], got["peak_bytes"][c]
            ok = abs(p - m) <= 0.10 * m or (m < (1 << 20) and abs(p - m) <= FLOOR)
            if ranged and c in ("io", "total"):
                hi = r["io_slow"] if c == "io" else r["total_slow"]
                ok = 0.9 * p <= m <= 1.1 * hi + FLOOR
            if table and (p or m):
                print("%-12s rank %d %-12s predicted %10.3f MiB measured %10.3f MiB %+6.1f%%%s"
                      % (name, r["rank"], c, p / 2**20, m / 2**20,
                         100.0 * (p - m) / m if m else 0.0, "" if ok else "  <-- off"))
            if not ok:
                bad.append("%s: rank %d %s: predicted %d, measured %d" % (name, r["rank"], c, p, m))
        for axis in set(r["comm_bytes_per_step"]) | set(got["comm_bytes_per_step"]):
            p = r["comm_bytes_per_step"].get(axis, 0)
            m = got["comm_bytes_per_step"].get(axis, 0)
            if p != m:
                bad.append("%s: rank %d comm %s: predicted %d bytes/step, measured %d"
                           % (name, r["rank"], axis, p, m))
    for b in bad:
        print("FAIL: " + b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
