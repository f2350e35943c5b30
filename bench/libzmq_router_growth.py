#!/usr/bin/env python3
"""How a long-lived libzmq ROUTER's memory follows repeated floods (no jupyter-handshake code).

A ROUTER set up as the Python driver's registration socket (2 KiB frames, RCVHWM 4, backlog
4096) is drained by an asyncio reader that drops everything; ROUNDS times, 3 processes open 100
DEALER connections each, flood it with forged near-limit messages for 1.5 s (bench/flood.py's
flooder) and disconnect. Printed after each round: this process's RSS, before and after
glibc's malloc_trim(0), and the messages read so far. `--silent`: connections that send
nothing, for comparison.

    python3 bench/libzmq_router_growth.py --rounds 5
"""

import argparse
import asyncio
import ctypes
import multiprocessing
import os
import sys

import zmq
import zmq.asyncio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flood  # noqa: E402


def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024


async def main(a):
    ctx = zmq.asyncio.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    for option, value in ((zmq.LINGER, 0), (zmq.MAXMSGSIZE, 2048), (zmq.RCVHWM, 4),
                          (zmq.BACKLOG, 4096)):
        router.setsockopt(option, value)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    flood.FRAME = 2048 - 64
    read = 0

    async def drain():
        nonlocal read
        while True:
            await router.recv_multipart()
            read += 1
            if read % 64 == 0:
                await asyncio.sleep(0)

    reader = asyncio.get_running_loop().create_task(drain())
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    mode = "silent" if a.silent else "forged"
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}; start: {rss_mib()} MiB")
    for round_ in range(a.rounds):
        stop, used = multiprocessing.Event(), multiprocessing.Queue()
        workers = [multiprocessing.Process(target=flood.flooder, args=(port, 100, mode, stop, used))
                   for _ in range(3)]
        for w in workers:
            w.start()
        await asyncio.sleep(1.5)
        stop.set()
        for w in workers:
            w.join(10)
        await asyncio.sleep(0.5)
        before = rss_mib()
        trim(0)
        print(f"round {round_}: {before} MiB, {rss_mib()} MiB after malloc_trim, {read} read")
    reader.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--silent", action="store_true")
    asyncio.run(main(p.parse_args()))
