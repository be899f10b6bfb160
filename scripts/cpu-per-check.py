#!/usr/bin/env python3
"""CPU time per check, by process, while a `cpis --json bench check ...` runs.

    CPIS_DATA_DIR=.cpis-pg scripts/cpu-per-check.py target/release/cpis --json bench check \
        --rate 600 --duration 12s

Runs the command, reads every process's CPU time from /proc before and after (Postgres
backends grouped by database through pg_stat_activity; backends that exited meanwhile
through the postmaster's children times; the command itself through its resource usage),
and prints microseconds of CPU per check for each group and the whole machine. At a fixed
rate this is steadier than throughput on a machine whose speed varies: a change that saves
work shows up as fewer microseconds per check whatever the neighbours do.

Environment: PGHOST, PGPORT, PGUSER (default 127.0.0.1, 5432, postgres).
"""

import json
import os
import resource
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")


def machine():
    """Busy, idle and stolen ticks of the whole machine."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, open("/proc/stat").readline().split()[1:9]
    )
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle + iowait,
        "steal": steal,
    }


def processes():
    """pid -> (command name, command line, CPU ticks). The postmaster also appears under
    its negated pid with the CPU ticks of its children that exited."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmdline = open(f"/proc/{pid}/cmdline").read().replace("\0", " ").strip()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(pid)] = (comm, cmdline, int(fields[11]) + int(fields[12]))
        if comm == "postgres" and " -D " in f" {cmdline} ":
            out[-int(pid)] = ("postgres (exited)", "", int(fields[13]) + int(fields[14]))
    return out


def databases():
    """Postgres backend pid -> its database (or its kind, for background processes)."""
    rows = subprocess.run(
        ["psql", "-h", os.environ.get("PGHOST", "127.0.0.1"),
         "-p", os.environ.get("PGPORT", "5432"), "-U", os.environ.get("PGUSER", "postgres"),
         "-Atc", "SELECT pid, coalesce(datname, backend_type) FROM pg_stat_activity",
         "postgres"],
        capture_output=True, text=True, check=False,
    ).stdout
    return {int(p): d for p, _, d in (r.partition("|") for r in rows.splitlines()) if d}


def group(comm, cmdline, dbs, pid):
    if comm == "postgres (exited)":
        return "postgres: exited backends"
    if comm == "postgres" or cmdline.startswith("postgres"):
        return "postgres: " + dbs.get(pid, "other")
    if comm.startswith("cpis") and " dev" in f" {cmdline} ":
        return "cpis dev (the mesh)"
    if comm.startswith("redis"):
        return "redis"
    return "other: " + comm


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command = sys.argv[1:]
    if command[0] == "--":
        command = command[1:]
    m0, p0 = machine(), processes()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m1, p1 = machine(), processes()
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        sys.exit(f"the command failed ({run.returncode})")
    report = json.loads(run.stdout)
    phases = [p for p in (report.get("check"), report.get("open_loop")) if p]
    checks = sum(p["requests"] for p in phases)
    if not checks:
        sys.exit("no checks were sent")
    dbs = databases()
    cpu = {"the load generator (this command)": (r1.ru_utime + r1.ru_stime)
           - (r0.ru_utime + r0.ru_stime)}
    for pid, (comm, cmdline, ticks) in p1.items():
        used = (ticks - p0[pid][2]) if pid in p0 else ticks
        if used > 0:
            name = group(comm, cmdline, dbs, abs(pid))
            cpu[name] = cpu.get(name, 0.0) + used / HZ
    for phase in phases:
        lat = phase["latency_ms"]
        print(f"{phase['requests']} checks at {phase['requests_per_second']:.0f}/s: "
              f"p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f} ms, "
              f"{phase['errors']} errors")
    per = lambda seconds: seconds * 1e6 / checks
    print(f"{'CPU per check':<44} {'µs':>7}")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        if per(seconds) >= 1:
            print(f"  {name:<42} {per(seconds):7.0f}")
    busy = (m1["busy"] - m0["busy"]) / HZ
    steal = (m1["steal"] - m0["steal"]) / HZ
    print(f"{'the whole machine (busy)':<44} {per(busy):7.0f}   (stolen by the host: "
          f"{per(steal):.0f})")


if __name__ == "__main__":
    main()
