#!/usr/bin/env python3
"""Flood the launcher's registration socket while it launches, and measure what gets through.

Runs `jupyter-handshake launch --count N --json -- <our kernel>` twice: once alone, once while
FLOODERS processes, each holding CONNS unauthenticated DEALER connections to its registration
port, send forged near-limit messages (frames just under the registration socket's 8 KiB limit, a
signature that verifies under no key; `--frame` to change their size) as fast as libzmq lets them. With `--endless`, one more
connection streams a multipart message that never ends (ZMTP frames with the MORE flag
forever, written by hand) instead.

Prints, for each run: healthy/total kernels, wall time, and the launcher's peak resident
memory (VmHWM sampled from /proc every 5 ms); then the slowdown ratio (flooded / alone) and
the load average. The registration port is read from the first registration file the launcher
writes (a hostile local user of the same account can read it too; one of another account
would scan ports instead, with the same effect).

    python3 bench/flood.py --count 50 --flooders 4 --conns 100
    python3 bench/flood.py --count 2 --endless --endless-mb 1024 --hold 8

`--launcher CMD` replaces `<bin> launch` (the tokio driver's launcher:
`--launcher "target/release/examples/flood_launcher launch"`), `--kernel CMD` the kernel
command (default `<bin> kernel -f {connection_file}`).
"""

import argparse
import glob
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import tempfile
import time

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = 8 * 1024 - 64  # just under the registration socket's ZMQ_MAXMSGSIZE (8 KiB)


def default_binary():
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, "jupyter-handshake")
        if os.path.exists(path):
            return path
    sys.exit("build the tool first: cargo build --release -p jupyter-handshake-cli")


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def forged(i):
    header = json.dumps(
        {"msg_id": f"forged-{i}", "msg_type": "handshake_request", "pad": "x" * (FRAME - 200)}
    ).encode()[:FRAME]
    return [b"<IDS|MSG>", b"0" * 64, header, b"{}", b"{}", b"{}"]


def flooder(port, conns, stop):
    ctx = zmq.Context()
    sockets = []
    for _ in range(conns):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 1000)
        s.connect(f"tcp://127.0.0.1:{port}")
        sockets.append(s)
    frames = forged(os.getpid())
    i = 0
    while not stop.is_set():
        for s in sockets:
            try:
                s.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass
            i += 1
        time.sleep(0)
    for s in sockets:
        s.close(0)
    ctx.term()


def endless(port, total_mb, stop):
    """One connection that speaks ZMTP 3.0 itself (a libzmq sender would keep the unfinished
    message in its own memory: it flushes a pipe only at a message's last frame) and streams
    frames that all have the MORE flag: a message that never ends."""
    import socket
    import struct

    s = socket.create_connection(("127.0.0.1", port))
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
    greeting += b"\x00" + b"\x00" * 31
    s.sendall(greeting)
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    s.sendall(b"\x04" + bytes([len(body)]) + body)
    frame = b"\x03" + struct.pack(">Q", FRAME) + b"e" * FRAME  # MORE | LONG
    sent = 0
    try:
        while not stop.is_set() and sent < total_mb * 1024 * 1024:
            s.sendall(frame)
            sent += FRAME
    except OSError:
        pass
    stop.wait()
    s.close()


def run(binary, count, timeout, flood=None, hold=0.0, launcher=None, kernel=None):
    runtime = tempfile.mkdtemp(prefix="jh-flood-")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=runtime)
    kernel = kernel or [binary, "kernel", "-f", "{connection_file}"]
    if hold:
        # The kernels start `hold` seconds late: the launcher waits (and is flooded) that long.
        kernel = ["sh", "-c", f'sleep {hold}; exec "$@"', "sh", *kernel]
    launcher = launcher or [binary, "launch"]
    argv = [*launcher, "--json", "--count", str(count), "--timeout", str(timeout), "--",
            *kernel]
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    stop = multiprocessing.Event()
    workers = []
    peak = 0
    port = None
    while proc.poll() is None:
        peak = max(peak, vm_hwm_kb(proc.pid) or 0)
        if flood and port is None:
            for path in glob.glob(os.path.join(runtime, "kernel-*.json")):
                try:
                    with open(path) as f:
                        port = json.load(f).get("registration_port")
                except (OSError, ValueError):
                    continue
                if port:
                    workers = flood(port, stop)
                    break
        time.sleep(0.005)
    wall = time.monotonic() - start
    stop.set()
    out, err = proc.communicate()
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.terminate()
    healthy = sum(1 for line in out.splitlines() if '"status":"ok"' in line)
    return healthy, wall, peak, err.strip().splitlines()[-1:] if proc.returncode else []


def main():
    global FRAME
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin", default=None)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--flooders", type=int, default=4)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--frame", type=int, default=FRAME,
                   help="bytes per forged frame (default: just under the 8 KiB limit)")
    p.add_argument("--endless", action="store_true")
    p.add_argument("--endless-mb", type=int, default=512)
    p.add_argument("--launcher", default=None,
                   help="launcher command instead of '<bin> launch' (shell words)")
    p.add_argument("--kernel", default=None,
                   help="kernel command with {connection_file} (shell words)")
    p.add_argument("--hold", type=float, default=0.0,
                   help="start each kernel this many seconds late (keeps the launcher waiting)")
    a = p.parse_args()
    FRAME = a.frame
    binary = a.bin or (None if a.launcher and a.kernel else default_binary())

    def start_flood(port, stop):
        ws = []
        if a.endless:
            ws.append(multiprocessing.Process(target=endless, args=(port, a.endless_mb, stop)))
        else:
            for _ in range(a.flooders):
                ws.append(multiprocessing.Process(target=flooder, args=(port, a.conns, stop)))
        for w in ws:
            w.start()
        return ws

    launcher = shlex.split(a.launcher) if a.launcher else None
    kernel = shlex.split(a.kernel) if a.kernel else None
    base = run(binary, a.count, a.timeout, hold=a.hold, launcher=launcher, kernel=kernel)
    print(f"alone:   {base[0]}/{a.count} healthy, {base[1]:.2f} s, peak RSS {base[2] / 1024:.1f} MiB {base[3]}")
    what = (f"endless message of {a.endless_mb} MiB" if a.endless
            else f"{a.flooders} x {a.conns} connections")
    flooded = run(binary, a.count, a.timeout, start_flood, hold=a.hold, launcher=launcher,
                  kernel=kernel)
    print(f"flooded ({what}): {flooded[0]}/{a.count} healthy, {flooded[1]:.2f} s, "
          f"peak RSS {flooded[2] / 1024:.1f} MiB {flooded[3]}")
    print(f"slowdown: {flooded[1] / base[1]:.2f}x")
    print(f"load average: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
