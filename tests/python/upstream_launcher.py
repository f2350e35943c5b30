#!/usr/bin/env python3
"""A minimal *upstream*-dialect JEP 66 launcher (jupyter_client docs 5.6, as xeus-zmq's
handshake client does it, but verifying the request's signature), used to drive a kernel
under test.

Usage:

    python3 tests/python/upstream_launcher.py [--timeout SECS] [--verbose] -- KERNEL_ARGV...

``{connection_file}`` in KERNEL_ARGV is replaced by the path of the registration file.

Steps:

1. bind a ROUTER on tcp://127.0.0.1:0;
2. write {"kernel_id", "transport", "ip", "registration_ip", "registration_port" (a JSON
   *string*, as xeus reads it), "signature_scheme", "key"} with mode 0600;
3. spawn the kernel;
4. wait for ``[identity, b"<IDS|MSG>", signature, content]`` where the signature is the hex
   HMAC-SHA256 over the content frame alone and content is JSON with ``kernel_id`` (ours) and the
   five ports as strings; anything else is ignored;
5. reply ``[identity, b"<IDS|MSG>", HMAC(b"ACK"), b"ACK"]`` (what xeus-zmq's launcher sends);
6. check the kernel with jupyter_client (wait_for_ready, kernel_info), shut it down, and print
   one JSON line: {"registered": true, "ports": {...}, "kernel_info": {...}}.

Exit status 0 on success, 1 on failure (one line on stderr), 2 on usage errors. The key is
never printed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import zmq

import posit_launcher as common
from posit_launcher import IP, PORT_NAMES, SCHEME, SHUTDOWN_GRACE, LaunchError, log

DELIM = b"<IDS|MSG>"


def sign(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).hexdigest().encode("ascii")


def write_registration_file(directory: str, key: str, kernel_id: str, port: int) -> str:
    path = os.path.join(directory, "registration.json")
    info = {
        "kernel_id": kernel_id,
        "transport": "tcp",
        "ip": IP,
        "registration_ip": IP,
        "registration_port": str(port),
        "signature_scheme": SCHEME,
        "key": key,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return path


def read_request(frames: list[bytes], key: bytes, kernel_id: str) -> dict[str, int]:
    """The five ports of a valid request; raises ValueError otherwise."""
    if DELIM not in frames:
        raise ValueError("no <IDS|MSG> delimiter")
    rest = frames[frames.index(DELIM) + 1 :]
    if len(rest) != 2:
        raise ValueError(f"{len(rest)} frames after the delimiter, expected signature and content")
    signature, content = rest
    if not hmac.compare_digest(signature, sign(key, content)):
        raise ValueError("bad signature")
    request = json.loads(content)
    if not isinstance(request, dict):
        raise ValueError("content is not a JSON object")
    if request.get("kernel_id") != kernel_id:
        raise ValueError("kernel_id is not ours")
    ports = {}
    for name in PORT_NAMES:
        value = request.get(name)
        if not isinstance(value, str) or not value.isdigit() or not 0 < int(value) < 65536:
            raise ValueError(f"{name} is {value!r}, expected a port as a string")
        ports[name] = int(value)
    return ports


def wait_for_request(reg: zmq.Socket, key: bytes, kernel_id: str, proc: subprocess.Popen, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    last_rejection = None
    while True:
        code = proc.poll()
        if code is not None:
            raise LaunchError(f"kernel exited with status {code} before registering")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchError(f"timed out after {timeout:g} s waiting for the request (last rejection: {last_rejection})")
        if not reg.poll(min(remaining, 0.1) * 1000):
            continue
        frames = reg.recv_multipart()
        try:
            ports = read_request(frames, key, kernel_id)
        except ValueError as e:
            last_rejection = str(e)
            log(f"ignored message: {e}")
            continue
        identities = frames[: frames.index(DELIM)]
        reg.send_multipart([*identities, DELIM, sign(key, b"ACK"), b"ACK"])
        log(f"request accepted: ports={ports}; ACK sent")
        return ports


def run(kernel_argv: list[str], timeout: float) -> dict:
    key = uuid.uuid4().hex
    kernel_id = str(uuid.uuid4())
    context = zmq.Context()
    reg = context.socket(zmq.ROUTER)
    reg.linger = 1000
    tmpdir = tempfile.mkdtemp(prefix="upstream-launcher-")
    proc = None
    try:
        reg.bind(f"tcp://{IP}:0")
        port = int(reg.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        path = write_registration_file(tmpdir, key, kernel_id, port)
        argv = [a.replace("{connection_file}", path) for a in kernel_argv]
        log(f"registration port {port}; spawning {argv}")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
        ports = wait_for_request(reg, key.encode("ascii"), kernel_id, proc, timeout)
        reg.close()
        kernel_info = common.query_kernel(ports, key, timeout)
        common.stop_kernel(proc, SHUTDOWN_GRACE)
        return {"registered": True, "ports": ports, "kernel_info": kernel_info}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        reg.close(linger=0)
        context.term()
        shutil.rmtree(tmpdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = common.parse_args(argv)
    common._VERBOSE = args.verbose
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args.kernel_argv, args.timeout)
    except (LaunchError, OSError) as e:
        print(f"upstream_launcher: error: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # noqa: BLE001
        print(f"upstream_launcher: error: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
