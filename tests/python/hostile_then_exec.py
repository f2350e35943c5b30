#!/usr/bin/env python3
"""Attack a launcher's registration socket, then become the real kernel.

Usage:

    python3 tests/python/hostile_then_exec.py REGISTRATION_FILE -- KERNEL_ARGV...

Launched *as the kernel* by a Posit-dialect launcher (``{connection_file}`` is
substituted by the launcher, in REGISTRATION_FILE and in KERNEL_ARGV alike).
It reads the registration file and, before the real kernel exists, sends to
``tcp://ip:registration_port`` on a DEALER whose first frame is empty (so it
looks exactly like a REQ peer, as a real kernel is):

1. a ``handshake_request`` signed with a WRONG key (ports 1..5, so a launcher
   that accepted it would be caught: it would report those ports);
2. the same request with an EMPTY signature (unsigned, while the launcher has a
   key);
3. garbage: frames with no ``<IDS|MSG>`` delimiter;
4. garbage after a delimiter: a non-hex signature and a header that is not JSON.

It waits for the ZMTP connection to be up before sending, and closes the socket
with a linger, so every message has been handed to the launcher's TCP socket,
then waits 0.5 s more so that the launcher has read them all before the real
kernel exists. None of them should get a reply, and none should end the
launch. It then ``exec``s KERNEL_ARGV: the real kernel registers on the same
socket, in the same process (the launcher sees one child throughout).

stderr: one line per message sent, ``hostile_then_exec: sent <what>``, then the
kernel's own output.  Exit status 1 (before exec) if the registration port
cannot be reached; the launcher then reports the kernel's exit.
"""

from __future__ import annotations

import json
import os
import sys
import time

import zmq
from jupyter_client.session import Session
from zmq.utils.monitor import recv_monitor_message

FORGED_PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
CONNECT_TIMEOUT = 10.0
LINGER_MS = 5000
SETTLE = 0.5


def fail(text: str) -> None:
    print(f"hostile_then_exec: error: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def connect_and_wait(sock: zmq.Socket, endpoint: str) -> None:
    """Connects and blocks until the ZMTP handshake with the launcher's ROUTER has completed.

    The monitor is attached before the connect: attached after it, it misses a handshake that
    completed in between (a fast local ROUTER), and the wait then times out."""
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(endpoint)
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not monitor.poll(remaining * 1000):
                fail(f"no connection to the registration port within {CONNECT_TIMEOUT:g} s")
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: hostile_then_exec.py REGISTRATION_FILE -- KERNEL_ARGV...", file=sys.stderr)
        sys.exit(2)
    path, kernel_argv = argv[0], argv[2:]
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    if not isinstance(info.get("registration_port"), int):
        fail(f"{path} is not a registration file (no integer registration_port)")
    key = info["key"].encode("utf-8")
    scheme = info["signature_scheme"]
    endpoint = f"tcp://{info['ip']}:{info['registration_port']}"

    wrong = Session(key=key + b"-but-wrong", signature_scheme=scheme, username="forger")
    unsigned = Session(key=b"", signature_scheme=scheme, username="forger")
    messages = [
        ("handshake_request signed with a wrong key",
         wrong.serialize(wrong.msg("handshake_request", content=FORGED_PORTS))),
        ("handshake_request with an empty signature",
         unsigned.serialize(unsigned.msg("handshake_request", content=FORGED_PORTS))),
        ("garbage without a delimiter", [b"\x00\xffgarbage", b"more garbage"]),
        ("garbage after a delimiter", [b"<IDS|MSG>", b"not-hex!", b"{not json", b"{}", b"{}", b"[]"]),
    ]

    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    connect_and_wait(sock, endpoint)
    for what, frames in messages:
        # An empty first frame, as a REQ socket puts before every request.
        sock.send_multipart([b"", *frames])
        print(f"hostile_then_exec: sent {what}", file=sys.stderr, flush=True)
    # close + term return once everything queued has been written out (or the linger ran out).
    sock.close(linger=LINGER_MS)
    context.term()
    # Give the launcher time to read all of it before the real kernel can connect: a ROUTER
    # fair-queues its peers message by message, so a launcher descheduled until both peers had
    # sent could otherwise take the real request before the last hostile message.
    time.sleep(SETTLE)

    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvp(kernel_argv[0], kernel_argv)
    except OSError as e:
        fail(f"cannot exec {kernel_argv[0]}: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
