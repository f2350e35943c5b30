#!/usr/bin/env python3
"""Flood the launcher's registration socket while it launches, and measure what gets through.

For each `--count N`, runs `jupyter-handshake launch --count N --json -- <our kernel>` alone and
under each flood of `--modes`, `--repeat` times, alternating, and prints the medians:

* `forged`: FLOODERS processes, each holding CONNS unauthenticated DEALER connections to the
  registration port, send forged near-limit messages (frames just under the registration
  socket's frame limit, a signature that verifies under no key; `--frame` to change their size)
  as fast as libzmq takes them;
* `silent`: the same connections, sending nothing (what the connections alone cost);
* `burn`: as many processes spinning on the CPU, no connection (what sharing the 2 cores with
  busy processes costs: no launcher can avoid that part);
* `--endless`: one connection streams a multipart message that never ends (ZMTP frames with the
  MORE flag forever, written by hand) instead.

Printed for each: healthy/total kernels (the fewest of the runs), wall time, the ratio to the
launch alone, when the last kernel registered (the rest of the wall time is checking them with
kernel_info), the CPU seconds of the launcher (all its threads), of its kernels and of the
flooders, and the launcher's peak resident memory (VmHWM sampled from /proc every 5 ms, the
largest of the runs); then the load average. The registration port is read from the first
registration file the launcher writes (a hostile local user of the same account can read it
too; one of another account would scan ports instead, with the same effect).

    cargo build --release -p jupyter-handshake-cli
    python3 bench/flood.py --count 20 --count 50 --flooders 3 --conns 100
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
import queue
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = 2 * 1024 - 64  # just under the registration socket's ZMQ_MAXMSGSIZE (2 KiB)


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


def flooder(port, conns, mode, stop, used):
    """One flooding process: `conns` DEALER connections to the registration port. `forged`: each
    sends forged near-limit messages as fast as libzmq takes them; `silent`: connected, sends
    nothing (the cost of the connections alone); `burn`: no connection, spins on the CPU (the
    cost of sharing 2 cores with busy processes, which no launcher can avoid). Puts its CPU
    seconds (all its threads: libzmq's I/O thread too) on `used` when stopped."""
    ctx = zmq.Context()
    sockets = []
    if mode != "burn":
        for _ in range(conns):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 1000)
            s.connect(f"tcp://127.0.0.1:{port}")
            sockets.append(s)
    frames = forged(os.getpid())
    while not stop.is_set():
        if mode == "forged":
            for s in sockets:
                try:
                    s.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    pass
            time.sleep(0)
        elif mode == "silent":
            stop.wait(0.05)
        else:
            for _ in range(10000):
                pass
    ru = resource.getrusage(resource.RUSAGE_SELF)
    used.put(ru.ru_utime + ru.ru_stime)
    for s in sockets:
        s.close(0)
    ctx.term()


def endless(port, total_mb, stop, used):
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
    ru = resource.getrusage(resource.RUSAGE_SELF)
    used.put(ru.ru_utime + ru.ru_stime)
    s.close()


def cpu_seconds(pid):
    """utime + stime of `pid` (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Result:
    def __init__(self, healthy, wall, registered, peak_kb, launcher_cpu, kernels_cpu, flood_cpu,
                 error):
        self.healthy = healthy
        self.registered = registered
        self.wall = wall
        self.peak_kb = peak_kb
        self.launcher_cpu = launcher_cpu
        self.kernels_cpu = kernels_cpu
        self.flood_cpu = flood_cpu
        self.error = error


def run(binary, count, timeout, flood=None, hold=0.0, launcher=None, kernel=None):
    """One `launch --count COUNT`; `flood(port, stop, used)` starts the flooders once the
    registration port is known and returns them."""
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
    streams = {}

    def drain(name, pipe):
        streams[name] = pipe.read()

    readers = [threading.Thread(target=drain, args=(n, p))
               for n, p in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    stop = multiprocessing.Event()
    used = multiprocessing.Queue()
    workers = []
    peak = 0
    launcher_cpu = 0.0
    port = None
    while True:
        done, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        peak = max(peak, vm_hwm_kb(proc.pid) or 0)
        launcher_cpu = cpu_seconds(proc.pid) or launcher_cpu
        if flood and port is None:
            for path in glob.glob(os.path.join(runtime, "kernel-*.json")):
                try:
                    with open(path) as f:
                        port = json.load(f).get("registration_port")
                except (OSError, ValueError):
                    continue
                if port:
                    workers = flood(port, stop, used)
                    break
        if time.monotonic() - start > timeout + hold + 60:
            # A launcher that outlives every deadline by a minute is hung: say so, do not wait.
            print(f"the launcher ran past its --timeout by 60 s: killed (pid {proc.pid})",
                  file=sys.stderr)
            proc.kill()
        time.sleep(0.005)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    for r in readers:
        r.join()
    flood_cpu = 0.0
    for _ in workers:
        try:
            flood_cpu += used.get(timeout=10)
        except queue.Empty:
            pass
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.terminate()
    out, err = streams.get("out", ""), streams.get("err", "")
    reports = []
    for line in out.splitlines():
        try:
            reports.append(json.loads(line))
        except ValueError:
            continue
    healthy = sum(1 for r in reports if r.get("kernel_info", {}).get("status") == "ok")
    # When the last kernel registered, from the tool's start: the rest is the check phase.
    registered = max((r.get("timings_us", {}).get("register", 0) for r in reports), default=0)
    # wait4's usage is the launcher's and that of the children it reaped: its kernels.
    kernels_cpu = max(0.0, rusage.ru_utime + rusage.ru_stime - launcher_cpu)
    error = err.strip().splitlines()[-1:] if proc.returncode else []
    return Result(healthy, wall, registered / 1e6, peak, launcher_cpu, kernels_cpu, flood_cpu, error)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    global FRAME
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin", default=None)
    p.add_argument("--count", type=int, action="append",
                   help="kernels per launch; repeat for several (default: 20 and 50)")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--flooders", type=int, default=3)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--burners", type=int, default=None,
                   help="spinning processes of the burn mode (default: twice FLOODERS, as many "
                        "as the busy threads of a forged flood: Python's and libzmq's I/O "
                        "thread in each flooder)")
    p.add_argument("--modes", default="forged,silent,burn",
                   help="floods to compare with a launch alone, comma-separated: forged "
                        "(default flood), silent (connections that send nothing), burn (as many "
                        "processes spinning on the CPU, no connection)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each launch, alternating; the medians are printed")
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
    launcher = shlex.split(a.launcher) if a.launcher else None
    kernel = shlex.split(a.kernel) if a.kernel else None
    counts = a.count or [20, 50]
    burners = a.burners if a.burners is not None else 2 * a.flooders
    modes = ["endless"] if a.endless else [m for m in a.modes.split(",") if m]

    def start_flood(mode):
        def start(port, stop, used):
            if mode == "endless":
                ws = [multiprocessing.Process(target=endless, args=(port, a.endless_mb, stop, used))]
            else:
                n = burners if mode == "burn" else a.flooders
                ws = [multiprocessing.Process(target=flooder,
                                              args=(port, a.conns, mode, stop, used))
                      for _ in range(n)]
            for w in ws:
                w.start()
            return ws
        return start

    what = {
        "forged": f"{a.flooders} x {a.conns} connections, forged {FRAME} B frames",
        "silent": f"{a.flooders} x {a.conns} connections, sending nothing",
        "burn": f"{burners} processes spinning, no connection",
        "endless": f"one endless message of {a.endless_mb} MiB",
    }
    print(f"{a.repeat} run(s) of each, medians; reg: when the last kernel registered (the rest "
          f"of wall is checking them); CPU in seconds: launcher (all its threads), its kernels "
          f"(reaped), the flooders")
    print(f"{'count':>5}  {'flood':<48} {'healthy':>9} {'wall':>7} {'ratio':>6} {'reg':>6} "
          f"{'launcher':>8} {'kernels':>7} {'flood':>6} {'peak RSS':>9}")
    for count in counts:
        results = {m: [] for m in ["alone", *modes]}
        for _ in range(a.repeat):
            results["alone"].append(run(binary, count, a.timeout, hold=a.hold,
                                        launcher=launcher, kernel=kernel))
            for mode in modes:
                results[mode].append(run(binary, count, a.timeout, start_flood(mode),
                                         hold=a.hold, launcher=launcher, kernel=kernel))
        base = median(r.wall for r in results["alone"])
        for mode, rs in results.items():
            wall = median(r.wall for r in rs)
            healthy = min(r.healthy for r in rs)
            errors = [e for r in rs for e in r.error]
            label = what.get(mode, "none")
            print(f"{count:>5}  {label:<48} {healthy:>4}/{count:<4} {wall:>6.2f}s "
                  f"{wall / base:>5.2f}x {median(r.registered for r in rs):>5.2f}s {median(r.launcher_cpu for r in rs):>7.2f}s "
                  f"{median(r.kernels_cpu for r in rs):>6.2f}s "
                  f"{median(r.flood_cpu for r in rs):>5.2f}s "
                  f"{max(r.peak_kb for r in rs) / 1024:>7.1f}Mi"
                  + (f"  {errors[0]}" if errors else ""))
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
