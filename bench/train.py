#!/usr/bin/env python3
"""The training load for profile-guided optimization (bench/pgo runs it; see there).

An instrumented sidecar counts its branches and calls as it runs and writes them out when it
exits. This drives every data path a sidecar has, briefly, through sidecars built that way
(UNDERSTUDY_RELEASE_DIR), then stops them with SIGTERM so that they exit and write:
  HTTP/1     a leader, and a standby forwarding to it: small GETs on keep-alive connections,
             POSTs with a body, 1 MiB responses, one request per connection
  HTTP/2     a leader whose app speaks h2c (h2load)
  TCP mode   a leader, and a standby handing connections to it
  WebSocket  a leader, and a standby, whose app is bench/ws's echo server
A function the load never reaches gets no profile and is optimized as it would be without
one; inside a function it does reach, the branches it never takes are laid out as cold code.
So a path that matters belongs in this list. Bounded: a few seconds a load; every process is
ours, listens on 127.0.0.1 only, and is killed at the end.
"""
import os, signal, subprocess, sys, tempfile

from bench import (LOAD_CPU, PORTS, WS_CONNS, cleanup, get, h2load, start_backend, start_emulator,
                   start_understudy, start_ws_echo, wait_for, wrk, ws_load)
from instructions import leader_of

SECONDS = 3

POST_LUA = """
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def post(port, tmp):
    """POSTs of 1 KiB bodies on keep-alive connections, through `port`."""
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write(POST_LUA)
    subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{SECONDS}s", "-s", lua,
                    f"http://127.0.0.1:{port}/"],
                   check=True, capture_output=True, timeout=SECONDS + 30)


def main():
    tmp = tempfile.mkdtemp(prefix="understudy-train-")
    sidecars = []

    def sidecar(ident, listen, admin, leader, **kw):
        # No drain: SIGTERM ends it at once (the profile is written as it exits).
        kw["extra"] = tuple(kw.get("extra", ())) + ("--drain", "0s")
        p = start_understudy(tmp, kubeconfig, ident, PORTS[listen], PORTS[admin], **kw)
        sidecars.append(p)
        wait_for(lambda: leader_of(PORTS[admin]) == leader, f"{ident}'s leader")

    try:
        start_backend(tmp)
        kubeconfig = start_emulator(tmp)
        sidecar("lead", "leader", "admin_leader", "lead")
        sidecar("standby", "standby", "admin_standby", "lead")
        for port in (PORTS["leader"], PORTS["standby"]):
            wrk(port, 64, SECONDS, tmp)
            post(port, tmp)
            wrk(port, 16, 1, tmp, path="/big")
            wrk(port, 16, 1, tmp, headers=("Connection: close",))
        get(f"http://127.0.0.1:{PORTS['admin_leader']}/metrics")

        sidecar("lead-h2", "leader_h2", "admin_h2", "lead-h2", election="bench-h2",
                upstream="backend_h2")
        h2load(PORTS["leader_h2"], 64, 10, SECONDS)

        tcp = dict(election="bench-tcp", extra=("--mode", "tcp"))
        sidecar("lead-tcp", "leader_tcp", "admin_tcp", "lead-tcp", **tcp)
        sidecar("standby-tcp", "standby_tcp", "admin_tcp_standby", "lead-tcp", **tcp)
        # The leader takes a hand-off only from a member it has seen (its member Lease).
        wait_for(lambda: wrk(PORTS["standby_tcp"], 1, 1, tmp)["errors"] == 0, "the TCP hand-off")
        for port in (PORTS["leader_tcp"], PORTS["standby_tcp"]):
            wrk(port, 64, SECONDS, tmp)
            wrk(port, 16, 1, tmp, headers=("Connection: close",))

        start_ws_echo()
        ws = dict(election="bench-ws", upstream="ws_echo")
        sidecar("lead-ws", "leader_ws", "admin_ws", "lead-ws", **ws)
        sidecar("standby-ws", "standby_ws", "admin_ws_standby", "lead-ws", **ws)
        for port in (PORTS["leader_ws"], PORTS["standby_ws"]):
            ws_load(port, WS_CONNS, SECONDS)

        for p in sidecars:
            os.killpg(p.pid, signal.SIGTERM)
        for p in sidecars:
            if p.wait(timeout=30) != 0:
                sys.exit(f"train: a sidecar exited with {p.returncode}, its profile may be missing")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
