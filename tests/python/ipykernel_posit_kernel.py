#!/usr/bin/env python3
"""Make stock ipykernel perform the *kernel* side of the Posit-dialect JEP 66 handshake.

Usage:

    python3 tests/python/ipykernel_posit_kernel.py -f REGISTRATION_FILE

REGISTRATION_FILE is {"transport", "signature_scheme", "ip", "key",
"registration_port"} as written by a Posit-dialect launcher.  The wrapper:

1. writes a private classic connection file (all five ports 0, same
   transport/ip/key/signature_scheme) into a temporary directory;
2. ``IPKernelApp.instance().initialize(["-f", that_file])``, which binds all
   five channels on random ports;
3. sends one signed ``handshake_request`` with the five bound ports (JSON
   integers) on a REQ socket connected to tcp://ip:registration_port, signed
   by the app's own jupyter_client Session (so the header's ``session`` is the
   kernel's session id, as with ark);
4. waits up to 10 s for the ``handshake_reply``, verifies it with
   ``Session.deserialize``, and exits non-zero unless it is a handshake_reply
   with status "ok" (a non-empty parent header must name our request);
5. closes the REQ socket and runs ``app.start()``.

The private connection file is deleted as soon as ``initialize()`` has read it.

If the file already carries all five ``*_port`` keys it is a classic
connection file: the wrapper then behaves like plain ipykernel (no handshake),
the same rule ark applies.

Note: ``initialize()`` replaces sys.stdout/sys.stderr with streams that publish
on IOPub and (on Linux/macOS) dup2()s a pipe over file descriptors 1 and 2, so
even ``sys.__stderr__`` ends up on IOPub.  Diagnostics are therefore written to
a copy of fd 2 taken before ``initialize()``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import typing as t

import zmq

PORT_NAMES = ("control_port", "shell_port", "stdin_port", "iopub_port", "hb_port")
REPLY_TIMEOUT_MS = 10_000


class Failure(Exception):
    def __init__(self, text: str, code: int = 1) -> None:
        super().__init__(text)
        self.code = code


def fail(text: str, code: int = 1) -> t.NoReturn:
    raise Failure(text, code)


def read_registration(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read registration file {path}: {e}", 2)
    if not isinstance(info, dict):
        fail(f"{path}: not a JSON object", 2)
    return info


def validate_registration(info: dict, path: str) -> None:
    for name in ("transport", "signature_scheme", "ip", "key"):
        if not isinstance(info.get(name), str):
            fail(f"{path}: missing or non-string {name!r}", 2)
    port = info.get("registration_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        fail(f"{path}: registration_port must be an integer port, got {port!r}", 2)
    if info["transport"] != "tcp":
        fail(f"{path}: only transport 'tcp' is supported, got {info['transport']!r}", 2)


def write_classic_file(info: dict) -> tuple[str, str]:
    tmpdir = tempfile.mkdtemp(prefix="ipykernel-posit-")  # mode 0700
    path = os.path.join(tmpdir, "kernel.json")
    classic = {
        "transport": info["transport"],
        "ip": info["ip"],
        "key": info["key"],
        "signature_scheme": info["signature_scheme"],
        "kernel_name": "",
        **{name: 0 for name in PORT_NAMES},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(classic, f, indent=2)
    return tmpdir, path


def handshake(app, info: dict) -> None:
    session = app.session
    if session.key != info["key"].encode("utf-8"):
        fail("ipykernel did not load the key from the connection file")
    ports = {name: int(getattr(app, name)) for name in PORT_NAMES}
    if not all(ports.values()):
        fail(f"ipykernel left a port unbound: {ports}")

    context = zmq.Context()
    req = context.socket(zmq.REQ)
    req.linger = 0
    try:
        req.connect(f"tcp://{info['ip']}:{info['registration_port']}")
        request = session.msg("handshake_request", content=ports)
        req.send_multipart(session.serialize(request))
        if not req.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
            fail(f"no handshake_reply within {REPLY_TIMEOUT_MS / 1000:g} s")
        frames = req.recv_multipart()
        try:
            _, rest = session.feed_identities(frames)
            reply = session.deserialize(rest)
        except Exception as e:  # noqa: BLE001
            fail(f"invalid handshake_reply: {type(e).__name__}: {e}")
        if reply["msg_type"] != "handshake_reply":
            fail(f"expected handshake_reply, got {reply['msg_type']!r}")
        parent_id = (reply.get("parent_header") or {}).get("msg_id")
        if parent_id is not None and parent_id != request["header"]["msg_id"]:
            fail("handshake_reply parent_header.msg_id does not match our request")
        content = reply["content"]
        status = content.get("status") if isinstance(content, dict) else None
        if status != "ok":
            detail = content.get("error") if isinstance(content, dict) else None
            fail(f"handshake_reply status {status!r}" + (f": {detail}" if detail else ""))
    finally:
        req.close(linger=0)
        context.term()


def run(argv: list[str], cleanup: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="ipykernel_posit_kernel.py",
        description="Stock ipykernel with the Posit-dialect JEP 66 handshake (kernel side).",
    )
    parser.add_argument("-f", dest="file", required=True, help="registration (or classic connection) file")
    args, extra = parser.parse_known_args(argv)

    info = read_registration(args.file)

    from ipykernel.kernelapp import IPKernelApp

    if all(name in info for name in PORT_NAMES):
        # Classic connection file: plain ipykernel, no handshake.
        app = IPKernelApp.instance()
        app.initialize(["-f", args.file, *extra])
        app.start()
        return

    validate_registration(info, args.file)
    tmpdir, classic_path = write_classic_file(info)
    cleanup.append(tmpdir)
    app = IPKernelApp.instance()
    app.initialize(["-f", classic_path, *extra])
    # ipykernel has read (and rewritten) the private file; nothing needs it
    # later, so remove it now rather than leave the key on disk if we get killed.
    shutil.rmtree(tmpdir, ignore_errors=True)
    handshake(app, info)
    app.start()


def main(argv: list[str]) -> None:
    stderr_fd = os.dup(2)  # survives ipykernel's fd capture
    cleanup: list[str] = []
    try:
        run(argv, cleanup)
    except Failure as e:
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)
        os.write(stderr_fd, f"ipykernel_posit_kernel: error: {e}\n".encode("utf-8", "replace"))
        # os._exit: once initialize() ran, ipykernel's threads and atexit hooks
        # must not keep the process alive or change the exit status.
        os._exit(e.code)
    finally:
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
