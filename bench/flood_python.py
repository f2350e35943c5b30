#!/usr/bin/env python3
"""Flood the Python driver's registration socket while it launches, and measure what gets through.

The Python package's counterpart of `bench/flood.py`: in one process, the driver
(`jupyter_handshake.driver.SharedRegistrar`, the one the provisioner uses) launches N of our
kernels (`<bin> kernel -f {connection_file}`, spawned with asyncio) alone and then next to
FLOODERS processes holding CONNS DEALER connections each, which send forged near-limit messages
as fast as libzmq takes them (`bench/flood.py`'s flooder). Printed for each `--count`, `--repeat`
runs alternating, medians: healthy/total, wall time from the first launch to the last
registration, the ratio to the launch alone, the messages the core verified and rejected and
those dropped unverified (peers past their strikes), and the process's peak RSS (it only grows:
read it on the first flooded line).

    pip install ./adapters/python && cargo build --release -p jupyter-handshake-cli
    python3 bench/flood_python.py --count 20 --count 50 --repeat 5
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402  (bench/flood.py: the flooder and the binary's default path)

from jupyter_handshake.driver import MAX_FRAME, LaunchFailed, SharedRegistrar  # noqa: E402


async def one(registrar, binary, directory, i, timeout):
    path = os.path.join(directory, f"kernel-{i}.json")
    launch = registrar.launch(path, dialect="posit", timeout=timeout)
    process = await asyncio.create_subprocess_exec(
        binary, "kernel", "-f", path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await launch.registered(lambda: process.returncode)
        return True
    except LaunchFailed:
        return False
    finally:
        process.kill()
        await process.wait()
        launch.close()


async def run(registrar, binary, count, timeout):
    directory = tempfile.mkdtemp(prefix="jh-flood-py-")
    start = time.monotonic()
    results = await asyncio.gather(
        *(one(registrar, binary, directory, i, timeout) for i in range(count)))
    return sum(results), time.monotonic() - start


async def measure(a):
    registrar = SharedRegistrar.for_running_loop()
    flood.FRAME = MAX_FRAME - 64
    rows = []
    for count in a.count:
        alone, flooded, counts = [], [], []
        for _ in range(a.repeat):
            alone.append(await run(registrar, a.bin, count, a.timeout))
            stop, used = multiprocessing.Event(), multiprocessing.Queue()
            workers = [multiprocessing.Process(target=flood.flooder,
                                               args=(registrar.port, a.conns, "forged", stop, used))
                       for _ in range(a.flooders)]
            before = (registrar.rejected, registrar.ignored)
            for w in workers:
                w.start()
            try:
                # Until the flood arrives: the core has rejected something new.
                for _ in range(1000):
                    if registrar.rejected > before[0]:
                        break
                    await asyncio.sleep(0.01)
                flooded.append(await run(registrar, a.bin, count, a.timeout))
            finally:
                stop.set()
                for w in workers:
                    w.join(10)
                    if w.is_alive():
                        w.kill()
            counts.append((registrar.rejected - before[0], registrar.ignored - before[1]))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = statistics.median(w for _, w in alone)
        wall = statistics.median(w for _, w in flooded)
        rows.append((count, "none", min(h for h, _ in alone), base, 1.0, "", ""))
        rows.append((count, f"{a.flooders} x {a.conns} connections, forged {flood.FRAME} B frames",
                     min(h for h, _ in flooded), wall, wall / base,
                     statistics.median(r for r, _ in counts),
                     statistics.median(i for _, i in counts), rss))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=None, help="jupyter-handshake (default: target/release)")
    p.add_argument("--count", type=int, action="append", help="kernels per launch (repeatable)")
    p.add_argument("--flooders", type=int, default=3)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    a.bin = a.bin or flood.default_binary()
    a.count = a.count or [20]
    rows = asyncio.run(measure(a))
    print(f"{a.repeat} run(s) of each, medians; rejected: messages the core verified and "
          "rejected; ignored: dropped unverified (past the strikes); peak RSS of this process")
    print(f"{'count':>5}  {'flood':<48} {'healthy':>8} {'wall':>7} {'ratio':>6} "
          f"{'rejected':>8} {'ignored':>8} {'peak RSS':>9}")
    for count, what, healthy, wall, ratio, rejected, ignored, *rss in rows:
        peak = f"{rss[0]:.1f}Mi" if rss else ""
        print(f"{count:>5}  {what:<48} {f'{healthy}/{count}':>8} {wall:>6.2f}s {ratio:>5.2f}x "
              f"{rejected!s:>8} {ignored!s:>8} {peak:>9}")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
