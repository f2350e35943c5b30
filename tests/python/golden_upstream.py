#!/usr/bin/env python3
"""Captures the upstream-dialect handshake of the real xeus-python (pinned in requirements.txt)
as golden frames for the core's tests.

    python3 tests/python/golden_upstream.py > core/tests/fixtures/golden_upstream.json

With a fixed key and kernel_id, it binds a ROUTER, writes an upstream registration file
(registration_port as a string, as xeus reads it), starts `python3 -m xpython_launcher -f FILE`,
records the request xeus sends (frames after the routing identity), checks it independently
(HMAC-SHA256 over the content frame alone, kernel_id, five string ports), answers the ACK that
xeus-zmq's launcher sends ([<IDS|MSG>, HMAC(b"ACK"), b"ACK"]), checks that xeus accepted it (it
answers kernel_info), and prints everything as JSON. Only the ports change between runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

import zmq
from jupyter_client.blocking.client import BlockingKernelClient

KEY = "golden-upstream-key-0123456789abcdef"
KERNEL_ID = "9c5e6f0e-2f4b-4c1e-8f63-1a2b3c4d5e6f"
IP = "127.0.0.1"
DELIM = b"<IDS|MSG>"
PORTS = ("control_port", "shell_port", "stdin_port", "iopub_port", "hb_port")


def sign(content: bytes) -> bytes:
    return hmac.new(KEY.encode(), content, hashlib.sha256).hexdigest().encode()


def main() -> int:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 1000
    router.bind(f"tcp://{IP}:0")
    port = int(router.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
    tmp = tempfile.mkdtemp(prefix="golden-upstream-")
    path = os.path.join(tmp, "registration.json")
    registration = {
        "kernel_id": KERNEL_ID,
        "transport": "tcp",
        "ip": IP,
        "registration_ip": IP,
        "registration_port": str(port),
        "signature_scheme": "hmac-sha256",
        "key": KEY,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(registration, f)
    os.chmod(path, 0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpython_launcher", "-f", path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not router.poll(60_000):
            raise SystemExit("xeus-python sent no request within 60 s")
        frames = router.recv_multipart()
        identity, request = frames[0], frames[1:]
        assert request[0] == DELIM, "no delimiter after the identity"
        assert len(request) == 3, f"expected delimiter, signature, content; got {len(request)} frames"
        signature, content = request[1], request[2]
        assert hmac.compare_digest(signature, sign(content)), "signature is not HMAC(content)"
        body = json.loads(content)
        assert body["kernel_id"] == KERNEL_ID
        ports = {name: int(body[name]) for name in PORTS}
        assert all(isinstance(body[name], str) for name in PORTS), "ports are not strings"
        ack = [DELIM, sign(b"ACK"), b"ACK"]
        router.send_multipart([identity, *ack])
        # xeus accepted the ACK if it serves kernel_info on the ports it registered.
        client = BlockingKernelClient()
        client.load_connection_info({"transport": "tcp", "ip": IP, "key": KEY, "signature_scheme": "hmac-sha256", **ports})
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            client.kernel_info()
            reply = client.get_shell_msg(timeout=30)
            protocol = reply["content"].get("protocol_version")
            implementation = reply["content"].get("implementation")
            client.shutdown()
        finally:
            client.stop_channels()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        router.close(linger=0)
        ctx.term()
    import xpython  # noqa: F401 - only to record the version
    from importlib.metadata import version

    print(json.dumps({
        "generator": f"tests/python/golden_upstream.py with xeus-python {version('xeus-python')}",
        "key": KEY,
        "kernel_id": KERNEL_ID,
        "registration_port": port,
        "ports": ports,
        "request_frames_hex": [f.hex() for f in request],
        "ack_frames_hex": [f.hex() for f in ack],
        "kernel_info": {"protocol_version": protocol, "implementation": implementation},
    }, indent=2))
    return 0


if __name__ == "__main__":
    time.sleep(0)
    sys.exit(main())
