#!/usr/bin/env python3
"""What users run today, timed on the same machine as the Rust benchmarks.

* codec: jupyter_client's `Session.sign`, `serialize` and `deserialize`, on the same messages
  (an `execute_reply` whose content is `{"data": "xxx…"}` of 256 B, 4 KiB, 64 KiB, 1 MiB, with
  the same parent header) and the same key as `core/benches/codec.rs`; plus Python's raw
  HMAC-SHA256 of the same bytes.
* handshake: a Posit-dialect handshake done in Python with pyzmq and jupyter_client's Session,
  over loopback: five ports bound (bind_to_random_port), REQ connected to a ROUTER, signed
  handshake_request, deserialized and answered, reply deserialized. Measured from the five
  ports bound to both sides done, ≥ 1000 times. (One thread: the ROUTER is read after the
  request is sent; the Rust benchmark uses a second thread for the launcher, which only adds
  wake-ups on its side.)

Prints one JSON object per line: {"bench", "size"?, "median_ns", "p99_ns"?}.
`python3 bench/python_bench.py [--rounds N]`
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import time

import zmq
from jupyter_client.session import Session

KEY = b"bench-key-0123456789abcdef0123456789abcdef"
SIZES = (256, 4 << 10, 64 << 10, 1 << 20)
PARENT = {
    "msg_id": "parent",
    "session": "s",
    "username": "u",
    "date": "2026-11-28T00:00:00.000000Z",
    "msg_type": "execute_request",
    "version": "5.3",
}


def per_call_ns(fn, min_time: float = 0.2, repeats: int = 15) -> float:
    """Median over `repeats` batches of the time per call, batches sized to last ~min_time/repeats."""
    batch = 1
    while True:
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed > min_time * 1e9 / repeats or batch > 1 << 20:
            break
        batch *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples)


def codec() -> None:
    session = Session(key=KEY, signature_scheme="hmac-sha256", username="bench", session="bench-session")
    for size in SIZES:
        # `{"data": "` + x… + `"}` with the stdlib packer's spacing; sized like the Rust content.
        content = {"data": "x" * (size - len('{"data": ""}'))}
        msg = session.msg("execute_reply", content=content, parent=PARENT)
        frames = session.serialize(msg)
        wire = frames[1:]  # after the delimiter: signature, header, parent, metadata, content
        parts = wire[1:5]
        mac = hmac.new(KEY, digestmod=hashlib.sha256)

        def raw_hmac() -> bytes:
            h = mac.copy()
            for p in parts:
                h.update(p)
            return h.digest()

        results = {
            "py_raw_hmac": per_call_ns(raw_hmac),
            "py_sign": per_call_ns(lambda: session.sign(parts)),
            "py_serialize": per_call_ns(lambda: session.serialize(msg)),
            # A fresh copy each time: deserialize consumes nothing, but its digest history
            # would refuse the second delivery of the same signature as a replay.
            "py_deserialize": per_call_ns(lambda: (session.digest_history.clear(), session.deserialize(wire))),
        }
        for bench, ns in results.items():
            print(json.dumps({"bench": bench, "size": size, "median_ns": round(ns, 1)}), flush=True)


def handshake(rounds: int) -> None:
    ctx = zmq.Context()
    key = b"handshake-key-0123456789abcdef"
    launcher_session = Session(key=key, signature_scheme="hmac-sha256", username="launcher")
    samples = []
    for i in range(rounds + 20):
        router = ctx.socket(zmq.ROUTER)
        router.linger = 1000
        reg_port = router.bind_to_random_port("tcp://127.0.0.1")
        kernel_session = Session(key=key, signature_scheme="hmac-sha256", username="kernel")
        channels = [ctx.socket(kind) for kind in (zmq.ROUTER, zmq.XPUB, zmq.ROUTER, zmq.ROUTER, zmq.REP)]
        ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in channels]
        bound = time.perf_counter_ns()
        req = ctx.socket(zmq.REQ)
        req.linger = 1000
        req.connect(f"tcp://127.0.0.1:{reg_port}")
        names = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
        kernel_session.send(req, "handshake_request", content=dict(zip(names, ports)))
        # The launcher side: receive, verify, read the ports, answer.
        idents, msg_list = launcher_session.feed_identities(router.recv_multipart())
        request = launcher_session.deserialize(msg_list)
        assert request["content"]["shell_port"] == ports[0]
        launcher_session.send(router, "handshake_reply", content={"status": "ok"}, parent=request, ident=idents)
        # The kernel side: the reply.
        _, reply_list = kernel_session.feed_identities(req.recv_multipart())
        reply = kernel_session.deserialize(reply_list)
        assert reply["content"]["status"] == "ok"
        done = time.perf_counter_ns()
        if i >= 20:
            samples.append(done - bound)
        for s in (req, router, *channels):
            s.close(linger=0)
    samples.sort()
    median = samples[len(samples) // 2]
    p99 = samples[round((len(samples) - 1) * 0.99)]
    print(json.dumps({"bench": "py_loopback", "samples": len(samples), "median_ns": median, "p99_ns": p99}), flush=True)
    ctx.term()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="loopback handshakes (default 1000)")
    args = parser.parse_args()
    codec()
    handshake(args.rounds)


if __name__ == "__main__":
    main()
