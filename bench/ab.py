#!/usr/bin/env python3
"""Before and after: another build of understudy beside this one and HAProxy, same run.

  bench/run --no-write ... (once, so that the release binaries and bench/ws are built), then
  python3 bench/ab.py OTHER_DIR [--rounds N] [--http1]

OTHER_DIR holds an `understudy` built with ./build-release at another commit (for example in
a `git worktree`). Two leaders of their own elections (the other build and this one) and
HAProxy take the HTTP/2 step's load (h2load, h2c) and the WebSocket step's (bench/ws),
interleaved rounds of five seconds; prints medians of req/s or messages/s and CPU per
request or message. With `--http1`, first the proxy path's load as well (wrk, 64
keep-alive connections, the HTTP backend; HAProxy as in bench/run), and each contender's
peak RSS after 1,000 connections. docs/BENCHMARKS.md quotes what it printed. Uses
bench/bench.py's helpers; every process is ours, on 127.0.0.1, and killed at the end.
"""
import argparse, json, os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="directory holding the other build's `understudy`")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--http1", action="store_true", help="the HTTP/1 proxy path too, with RSS at 1,000 connections")
    args = ap.parse_args()
    if not os.access(os.path.join(args.other, "understudy"), os.X_OK):
        raise SystemExit(f"bench/ab: no executable `understudy` in {args.other}")
    bench.PORTS.update(leader_other=18103, admin_other=14050, leader_other_h2=18104, admin_other_h2=14051,
                       leader_other_h1=18105, admin_other_h1=14052)
    tmp = tempfile.mkdtemp(prefix="understudy-ab-")
    try:
        bench.start_backend(tmp)
        kubeconfig = bench.start_emulator(tmp)
        bench.start_ws_echo()

        def leader(ident, port, admin, election, upstream, rel):
            this, bench.REL = bench.REL, rel
            try:
                p = bench.start_understudy(tmp, kubeconfig, ident, bench.PORTS[port], bench.PORTS[admin],
                                           election=election, upstream=upstream)
            finally:
                bench.REL = this
            bench.wait_for(lambda: json.loads(bench.get(f"http://127.0.0.1:{bench.PORTS[admin]}/"))["name"] == ident,
                           ident)
            return p.pid

        steps = {}
        if args.http1:
            steps["HTTP/1"] = ([("other", bench.PORTS["leader_other_h1"],
                                 [leader("other-h1", "leader_other_h1", "admin_other_h1", "ab-h1-other", "backend", args.other)]),
                                ("this", bench.PORTS["leader"],
                                 [leader("this-h1", "leader", "admin_leader", "ab-h1-this", "backend", bench.REL)]),
                                ("haproxy", bench.PORTS["haproxy"],
                                 bench.child_pids(bench.start_haproxy(tmp).pid))],
                               lambda port, seconds: bench.wrk(port, 64, seconds, tmp))
        steps |= {
            "HTTP/2": ([("other", bench.PORTS["leader_other_h2"],
                         [leader("other-h2", "leader_other_h2", "admin_other_h2", "ab-h2-other", "backend_h2", args.other)]),
                        ("this", bench.PORTS["leader_h2"],
                         [leader("this-h2", "leader_h2", "admin_h2", "ab-h2-this", "backend_h2", bench.REL)]),
                        ("haproxy", bench.PORTS["haproxy_h2"],
                         bench.child_pids(bench.start_haproxy(tmp, "haproxy_h2", upstream="backend_h2", h2=True).pid))],
                       lambda port, seconds: bench.h2load(port, 64, 10, seconds)),
            "WebSocket": ([("other", bench.PORTS["leader_other"],
                            [leader("other-ws", "leader_other", "admin_other", "ab-ws-other", "ws_echo", args.other)]),
                           ("this", bench.PORTS["leader_ws"],
                            [leader("this-ws", "leader_ws", "admin_ws", "ab-ws-this", "ws_echo", bench.REL)]),
                           ("haproxy", bench.PORTS["haproxy_ws"],
                            bench.child_pids(bench.start_haproxy(tmp, "haproxy_ws", upstream="ws_echo").pid))],
                          lambda port, seconds: bench.ws_load(port, bench.WS_CONNS, seconds)),
        }
        for step, (contenders, load) in steps.items():
            for _, port, _ in contenders:  # warm-up
                load(port, 1)
            res = {name: [] for name, _, _ in contenders}
            for _ in range(args.rounds):
                for name, port, pids in contenders:
                    before = [bench.proc_stats(p) for p in pids]
                    r = load(port, 5)
                    after = [bench.proc_stats(p) for p in pids]
                    r["cpu_us"] = sum(a["cpu"] - b["cpu"] for a, b in zip(after, before)) * 1e6 / max(r["requests"], 1)
                    res[name].append(r)
            for name, xs in res.items():
                print(f"{step:9s} {name:8s} {bench.med([x['rps'] for x in xs]):9.0f} /s  "
                      f"{bench.med([x['cpu_us'] for x in xs]):5.1f} µs CPU each  "
                      f"errors {sum(x['errors'] for x in xs)}", flush=True)
            if step == "HTTP/1":
                for name, port, pids in contenders:
                    r = bench.wrk(port, 1000, 5, tmp)
                    peak = sum(bench.proc_stats(p)["hwm"] for p in pids)
                    print(f"{step:9s} {name:8s} peak RSS after 1,000 connections {peak / 1024:.1f} MiB  "
                          f"({r['rps']:.0f} /s, errors {r['errors']})", flush=True)
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
