#!/usr/bin/env python3
"""Instructions per request: the proxies' own user-space work, counted, not timed.

`bench/run --instructions` runs this instead of the benchmark. Each contender's processes run
under valgrind's callgrind, which counts every instruction they execute in user space; the
counts are zeroed after a warm-up, wrk sends a bounded load (16 connections, `--seconds`), and
the instructions executed meanwhile are divided by the requests wrk saw answered. System time
(the kernel's side of the same system calls) is not counted: bench/bench.py's CPU figures hold
both. What this gives that they do not: the same figure on a quiet machine and a busy one, so
a change to the request path can be judged without rounds of timing on a shared host.

Contenders (as in bench/bench.py, every proxy process counted):
  understudy leader    wrk -> understudy (leader) -> backend
  understudy standby   wrk -> understudy (standby) -> understudy (leader) -> backend
  haproxy              plain; and "same headers", configured to edit heads as a sidecar does
  haproxy, two hops    and two hops with the same headers (the standby's yardsticks)
With --http2: h2load (64 connections of 10 streams, h2c) through a leader whose app speaks
h2c, and through HAProxy with h2 on both sides, as in bench/bench.py's HTTP/2 step.
Every process is ours, listens on 127.0.0.1 only, and is killed at the end.
"""
import argparse, glob, json, os, subprocess, tempfile, time

from bench import (PORTS, cleanup, get, h2load, start_backend, start_emulator, start_haproxy,
                   start_understudy, wait_for, wrk)

# Under callgrind a proxy runs some fifty times slower: room to start and to be elected.
SLOW = 120
# Seconds of no load, to learn what the processes do without it.
IDLE = 5


def callgrind(out):
    return ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p")


def leader_of(admin):
    return json.loads(get(f"http://127.0.0.1:{admin}/", timeout=10))["name"]


def executed(tmp, procs, during):
    """Instructions `procs` ((name, Popen) under callgrind) executed, summed, while `during()`
    ran, and how long it took."""
    for _, p in procs:
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
    start = time.monotonic()
    result = during()
    took = time.monotonic() - start
    total = 0
    for name, p in procs:
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        dumps = sorted(glob.glob(os.path.join(tmp, f"{name}.{p.pid}.*")), key=os.path.getmtime)
        if not dumps:
            raise SystemExit(f"bench: no callgrind dump for {name}")
        with open(dumps[-1]) as f:
            total += next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
    return total, took, result


def counted(tmp, port, procs, seconds, load=None):
    """(instructions, requests) of a bounded load on `port`, summed over `procs`. What the
    processes do with no load (the election's renewals, timers) is measured first, over
    IDLE seconds, and taken off at that rate: a slower run (a busy host) answers fewer
    requests in the same time, and would otherwise charge each with more of it."""
    load = load or (lambda s: wrk(port, 16, s, tmp))
    load(2)  # warm-up: connections and pools
    idle, idle_took, _ = executed(tmp, procs, lambda: time.sleep(IDLE))
    busy, took, r = executed(tmp, procs, lambda: load(seconds))
    return max(busy - idle * took / idle_took, 0), r["requests"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="per contender, under load")
    ap.add_argument("--http2", action="store_true",
                    help="HTTP/2 instead: h2load (64 connections of 10 streams, h2c) through a leader "
                         "whose app speaks h2c, and through HAProxy with h2 on both sides")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="understudy-instructions-")
    out = lambda name: callgrind(os.path.join(tmp, name))
    try:
        start_backend(tmp)
        kubeconfig = start_emulator(tmp)
        rows = (http2 if args.http2 else http1)(tmp, out, kubeconfig, args.seconds)
    finally:
        cleanup()
    per = {label: ir / max(n, 1) for label, (ir, n) in rows}
    yard = {"understudy leader": ("haproxy", "haproxy, same headers"),
            "understudy standby (two hops)": ("haproxy, two hops", "haproxy, same headers, two hops"),
            "understudy leader, HTTP/2": ("haproxy, HTTP/2", None)}
    print(f"\n{'contender':34s} {'requests':>9s} {'instructions/request':>21s}  ratios")
    for label, (ir, n) in rows:
        ratios = ""
        if label in yard:
            plain, same = yard[label]
            ratios = f"{per[label] / per[plain]:.2f} x plain HAProxy"
            if same:
                ratios += f", {per[label] / per[same]:.2f} x same headers"
        print(f"{label:34s} {n:9d} {per[label]:21,.0f}  {ratios}")


def http1(tmp, out, kubeconfig, seconds):
    """The HTTP/1 contenders' (label, (instructions, requests)), under wrk."""
    rows = []
    lead = start_understudy(tmp, kubeconfig, "lead", PORTS["leader"], PORTS["admin_leader"],
                            wrap=out("lead"), timeout=SLOW)
    wait_for(lambda: leader_of(PORTS["admin_leader"]) == "lead", "the leader", timeout=SLOW)
    rows.append(("understudy leader", counted(tmp, PORTS["leader"], [("lead", lead)], seconds)))
    standby = start_understudy(tmp, kubeconfig, "standby", PORTS["standby"], PORTS["admin_standby"],
                               wrap=out("standby"), timeout=SLOW)
    wait_for(lambda: leader_of(PORTS["admin_standby"]) == "lead", "the standby", timeout=SLOW)
    rows.append(("understudy standby (two hops)",
                 counted(tmp, PORTS["standby"], [("standby", standby), ("lead", lead)], seconds)))

    started = {}
    for label, name, upstream, headers, hop in [
        ("haproxy", "haproxy", "backend", None, None),
        ("haproxy, two hops", "haproxy2", "haproxy", None, "haproxy"),
        ("haproxy, same headers", "haproxy_hdr", "backend", "leader", None),
        ("haproxy, same headers, two hops", "haproxy_hdr2", "haproxy_hdr", "standby", "haproxy_hdr"),
    ]:
        p = start_haproxy(tmp, name, upstream=upstream, headers=headers, wrap=out(name), timeout=SLOW)
        started[name] = p
        procs = [(name, p)] + ([(hop, started[hop])] if hop else [])
        rows.append((label, counted(tmp, PORTS[name], procs, seconds)))
    return rows


def http2(tmp, out, kubeconfig, seconds):
    """The --http2 contenders' (label, (instructions, requests)), under h2load, as
    bench/bench.py's HTTP/2 step has them."""
    lead = start_understudy(tmp, kubeconfig, "lead-h2", PORTS["leader_h2"], PORTS["admin_h2"],
                            election="bench-h2", upstream="backend_h2", wrap=out("lead-h2"),
                            timeout=SLOW)
    wait_for(lambda: leader_of(PORTS["admin_h2"]) == "lead-h2", "the leader", timeout=SLOW)
    hap = start_haproxy(tmp, "haproxy_h2", upstream="backend_h2", h2=True, wrap=out("haproxy_h2"),
                        timeout=SLOW)
    rows = []
    for label, name, port, p in (("understudy leader, HTTP/2", "lead-h2", "leader_h2", lead),
                                 ("haproxy, HTTP/2", "haproxy_h2", "haproxy_h2", hap)):
        load = lambda s, port=PORTS[port]: h2load(port, 64, 10, s)
        rows.append((label, counted(tmp, PORTS[port], [(name, p)], seconds, load)))
    return rows


if __name__ == "__main__":
    main()
