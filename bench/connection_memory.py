#!/usr/bin/env python3
"""Memory per connection: what docs/operating.md sizes the memory limit with.

`bench/run --connection-memory` runs this instead of the benchmark. Each proxy's peak RSS
(VmHWM) is read after a bounded load of many busy keep-alive connections, less its RSS
before the load, and divided by the connections:
  HTTP/1    wrk -c N -> understudy (standby) -> understudy (leader) -> backend; both sidecars
  HTTP/2    h2load -c N -m 1 (h2c, prior knowledge) -> understudy (leader) -> backend (h2c)
  HAProxy   the same HTTP/2 load through HAProxy with h2 on both sides, for scale
Memory, not time: the figures do not depend on how busy the host is. Every process is ours,
listens on 127.0.0.1 only, and is killed at the end.
"""
import argparse, json, tempfile

from bench import (PORTS, child_pids, cleanup, get, h2load, proc_stats, start_backend,
                   start_emulator, start_haproxy, start_understudy, wait_for, wrk)


def leading(admin, name):
    url = f"http://127.0.0.1:{PORTS[admin]}/"
    wait_for(lambda: json.loads(get(url))["name"] == name, f"{name} leading")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=5, help="per load")
    args = ap.parse_args()
    n, tmp = args.connections, tempfile.mkdtemp(prefix="understudy-connection-memory-")
    try:
        start_backend(tmp)
        kc = start_emulator(tmp)
        lead = start_understudy(tmp, kc, "lead", PORTS["leader"], PORTS["admin_leader"])
        leading("admin_leader", "lead")
        standby = start_understudy(tmp, kc, "standby", PORTS["standby"], PORTS["admin_standby"])
        leading("admin_standby", "lead")
        lead_h2 = start_understudy(tmp, kc, "lead-h2", PORTS["leader_h2"], PORTS["admin_h2"],
                                   election="bench-h2", upstream="backend_h2")
        leading("admin_h2", "lead-h2")
        hap = child_pids(start_haproxy(tmp, "haproxy_h2", upstream="backend_h2", h2=True).pid)
        rss = lambda pids: sum(proc_stats(p)["rss"] for p in pids)
        peak = lambda pids: sum(proc_stats(p)["hwm"] for p in pids)
        rows = []

        def row(what, pids, before, load):
            after = peak(pids)
            rows.append((what, before, after, (after - before) / n, load))

        pids = {"lead": lead.pid, "standby": standby.pid, "h2": lead_h2.pid}
        before = {k: rss([p]) for k, p in pids.items()}
        before_hap = rss(hap)
        r = wrk(PORTS["standby"], n, args.seconds, tmp)
        row("HTTP/1: understudy standby", [standby.pid], before["standby"], r)
        row("HTTP/1: understudy leader behind it", [lead.pid], before["lead"], r)
        r = h2load(PORTS["leader_h2"], n, 1, args.seconds)
        row("HTTP/2 (h2c): understudy leader", [lead_h2.pid], before["h2"], r)
        r = h2load(PORTS["haproxy_h2"], n, 1, args.seconds)
        row("HTTP/2: haproxy", hap, before_hap, r)
        print(f"\n{n} busy keep-alive connections, {args.seconds}s of load each\n")
        print("| contender | RSS before | peak RSS | KiB a connection | req/s | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        for what, b, a, per, load in rows:
            print(f"| {what} | {b / 1024:.1f} MiB | {a / 1024:.1f} MiB | {per:.1f} "
                  f"| {load['rps']:.0f} | {load['errors']} |")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
