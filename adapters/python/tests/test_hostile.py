"""Hostile input on the shared registration socket: forged, unsigned, garbage, oversized and a
flood, next to a kernel that dies: the healthy launches are unaffected."""

import asyncio
import json
import os

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.session import Session

from jupyter_handshake.driver import MAX_FRAME, LaunchFailed, SharedRegistrar

PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


async def attack(port, stop):
    """Sends every kind of bad message until `stop` is set."""
    ctx = zmq.asyncio.Context.instance()
    socks = []
    try:
        forger = Session(key=b"not-anybody's-key")  # well-formed, wrongly signed
        unsigned = Session(key=b"")
        rounds = 0
        while not stop.is_set():
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(f"tcp://127.0.0.1:{port}")
            socks.append(s)
            await s.send_multipart([b"garbage"])
            await s.send_multipart([b"", b"<IDS|MSG>", b"00", b"{", b"}", b"", b""])
            await s.send_multipart([os.urandom(64) for _ in range(6)])
            for session in (forger, unsigned):
                msg = session.msg("handshake_request", content=PORTS)
                await s.send_multipart([b""] + session.serialize(msg))
            # upstream framing, content only, with a bogus signature
            content = json.dumps({"kernel_id": "x", **{k: str(v) for k, v in PORTS.items()}})
            await s.send_multipart([b"<IDS|MSG>", b"ab" * 32, content.encode()])
            rounds += 1
            if rounds % 5 == 0:
                big = ctx.socket(zmq.DEALER)  # libzmq drops this peer: frame over the limit
                big.linger = 0
                big.connect(f"tcp://127.0.0.1:{port}")
                socks.append(big)
                await big.send_multipart([b"x" * (MAX_FRAME + 1)])
            await asyncio.sleep(0.002)
        return rounds
    finally:
        for s in socks:
            s.close(linger=0)


async def run_kernel(name):
    km = AsyncKernelManager(kernel_name=name)
    try:
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            reply = await kc.execute_interactive("1 + 1", timeout=30)
            return reply["content"]["status"]
        finally:
            kc.stop_channels()
    finally:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
        else:
            await km.cleanup_resources()


async def test_hostile_input_next_to_a_dying_kernel(runtime_dir):
    registrar = SharedRegistrar.for_running_loop()
    stop = asyncio.Event()
    attacker = asyncio.create_task(attack(registrar.port, stop))
    await asyncio.sleep(0.05)
    names = ["hs-rust", "hs-rust-upstream", "hs-ipykernel", "hs-dies", "hs-rust"]
    results = await asyncio.gather(*(run_kernel(n) for n in names), return_exceptions=True)
    stop.set()
    rounds = await attacker
    assert rounds > 0 and registrar.rejected > rounds  # the core saw (and dropped) the attack
    dying = results.pop(3)
    assert isinstance(dying, LaunchFailed), dying
    # Reported because it exited (with its status), not because the deadline passed.
    assert dying.exit_code == 7 and "exit status 7" in str(dying)
    assert results == ["ok"] * 4, results
