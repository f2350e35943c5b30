#!/usr/bin/env python3
"""A minimal Posit-dialect JEP 66 *launcher*, used to drive a kernel under test.

Usage:

    python3 tests/python/posit_launcher.py [--timeout SECS] [--verbose] -- KERNEL_ARGV...

``{connection_file}`` anywhere in KERNEL_ARGV is replaced by the path of the
registration file this script writes.

Steps (Posit dialect, as Kallichore does it, but verifying strictly with
jupyter_client's Session):

1. bind a ROUTER on tcp://127.0.0.1:0 (a ROUTER rather than a REP so that bad
   messages can be dropped without replying and the wait goes on);
2. write {"transport","signature_scheme","ip","key","registration_port"} with
   mode 0600 into a private temporary directory; the key is a fresh uuid4 hex;
3. spawn the kernel (its stdout is sent to our stderr, so our stdout carries
   only the result line);
4. wait up to --timeout seconds for a valid, signed ``handshake_request`` with
   five integer ports, watching for the kernel exiting meanwhile; invalid
   messages are ignored (the last reason is reported if the wait times out);
5. reply a signed ``handshake_reply`` {"status": "ok"} whose parent header is
   the request's header;
6. connect a jupyter_client BlockingKernelClient to the five ports,
   ``wait_for_ready`` (up to --timeout), send ``kernel_info_request`` and check
   the reply (``status`` must be "ok" when present);
7. ``shutdown_request`` on control, wait for the kernel to exit (kill after a
   grace period), and print one JSON line on stdout:

   {"registered": true, "ports": {...}, "kernel_info": {"status": ..., "protocol_version": ..., "implementation": ...}}

Exit status 0 on success.  On failure one line goes to stderr and the exit
status is 1 (2 for usage errors).  The key is never printed.
"""

from __future__ import annotations

import argparse
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
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.session import Session

PORT_NAMES = ("control_port", "shell_port", "stdin_port", "iopub_port", "hb_port")
IP = "127.0.0.1"
SCHEME = "hmac-sha256"
SHUTDOWN_GRACE = 5.0

_T0 = time.monotonic()
_VERBOSE = False


class LaunchError(Exception):
    """A failure to report as the single stderr line."""


def log(text: str) -> None:
    if _VERBOSE:
        print(f"posit_launcher: [{(time.monotonic() - _T0) * 1000:7.1f} ms] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    if "--" in argv:
        split = argv.index("--")
        own, kernel_argv = argv[:split], argv[split + 1 :]
    else:
        own, kernel_argv = argv, []
    parser = argparse.ArgumentParser(
        prog="posit_launcher.py",
        usage="%(prog)s [--timeout SECS] [--verbose] -- KERNEL_ARGV...",
        description="Posit-dialect JEP 66 launcher for kernel tests.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the handshake_request, and again for kernel readiness (default 30)",
    )
    parser.add_argument("--verbose", action="store_true", help="log progress with timings on stderr")
    args = parser.parse_args(own)
    if not kernel_argv:
        parser.error("missing kernel command after --")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    args.kernel_argv = kernel_argv
    return args


def write_registration_file(directory: str, key: str, port: int) -> str:
    path = os.path.join(directory, "registration.json")
    info = {
        "transport": "tcp",
        "signature_scheme": SCHEME,
        "ip": IP,
        "key": key,
        "registration_port": port,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return path


def check_ports(content: object) -> dict[str, int]:
    if not isinstance(content, dict):
        raise ValueError("content is not a JSON object")
    ports = {}
    for name in PORT_NAMES:
        value = content.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ValueError(f"content.{name} is {value!r}, expected an integer port")
        ports[name] = value
    return ports


def file_was_rewritten(path: str) -> bool:
    """Stock ipykernel rewrites the file with classic *_port keys instead of dialing back."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and all(name in info for name in PORT_NAMES)


def wait_for_handshake(
    reg: zmq.Socket, session: Session, proc: subprocess.Popen, path: str, timeout: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    poller = zmq.Poller()
    poller.register(reg, zmq.POLLIN)
    last_rejection = None
    while True:
        code = proc.poll()
        if code is not None:
            raise LaunchError(f"kernel exited with status {code} before sending handshake_request")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            hint = ""
            if last_rejection:
                hint = f"; last message was rejected: {last_rejection}"
            elif file_was_rewritten(path):
                hint = (
                    "; the kernel rewrote the registration file with classic *_port keys instead "
                    "of dialing back (it does not implement the JEP 66 handshake, e.g. stock ipykernel)"
                )
            else:
                hint = "; the kernel never connected to the registration port"
            raise LaunchError(f"timed out after {timeout:g} s waiting for handshake_request{hint}")
        if not poller.poll(min(remaining, 0.1) * 1000):
            continue
        frames = reg.recv_multipart()
        try:
            idents, rest = session.feed_identities(frames)
        except ValueError:
            last_rejection = "no <IDS|MSG> delimiter"
            log(f"ignored message: {last_rejection}")
            continue
        try:
            msg = session.deserialize(rest)
            if msg["msg_type"] != "handshake_request":
                raise ValueError(f"msg_type is {msg['msg_type']!r}")
            ports = check_ports(msg["content"])
        except Exception as e:  # noqa: BLE001 - any parse/verify error means "ignore"
            last_rejection = f"{type(e).__name__}: {e}"
            log(f"ignored message: {last_rejection}")
            continue
        log(f"handshake_request accepted: ports={ports} header={rest[1].decode('utf-8', 'replace')}")
        reply = session.msg("handshake_reply", content={"status": "ok"}, parent=msg)
        reg.send_multipart(session.serialize(reply, ident=idents))
        log("handshake_reply sent")
        return ports


def query_kernel(ports: dict[str, int], key: str, timeout: float) -> dict:
    client = BlockingKernelClient()
    client.load_connection_info(
        {"transport": "tcp", "ip": IP, "key": key, "signature_scheme": SCHEME, **ports}
    )
    client.start_channels()
    try:
        try:
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as e:
            raise LaunchError(f"kernel not ready: {e}") from None
        log("wait_for_ready done")

        msg_id = client.kernel_info()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchError("no kernel_info_reply to our kernel_info_request")
            try:
                reply = client.get_shell_msg(timeout=remaining)
            except Exception:  # queue.Empty
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
            log(f"skipped shell message {reply['msg_type']} (not ours)")
        if reply["msg_type"] != "kernel_info_reply":
            raise LaunchError(f"expected kernel_info_reply, got {reply['msg_type']!r}")
        content = reply["content"]
        status = content.get("status")
        if status is not None and status != "ok":
            raise LaunchError(f"kernel_info_reply status is {status!r}")
        log(f"kernel_info_reply: protocol_version={content.get('protocol_version')!r}")

        client.shutdown()
        log("shutdown_request sent")
        try:
            ctrl = client.get_control_msg(timeout=SHUTDOWN_GRACE)
            log(f"control reply: {ctrl['msg_type']}")
        except Exception:  # queue.Empty: not fatal, we wait for the process below
            log("no shutdown_reply on control")
        return {
            "status": status,
            "protocol_version": content.get("protocol_version"),
            "implementation": content.get("implementation"),
        }
    finally:
        client.stop_channels()


def stop_kernel(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    log(f"kernel still running {grace:g} s after shutdown; killing it")
    proc.kill()
    proc.wait()


def run(args: argparse.Namespace) -> dict:
    key = uuid.uuid4().hex
    session = Session(key=key.encode("ascii"), signature_scheme=SCHEME, username="posit_launcher")
    context = zmq.Context()
    reg = context.socket(zmq.ROUTER)
    reg.linger = 1000
    tmpdir = tempfile.mkdtemp(prefix="posit-launcher-")  # mode 0700
    proc = None
    try:
        reg.bind(f"tcp://{IP}:0")
        port = int(reg.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        path = write_registration_file(tmpdir, key, port)
        kernel_argv = [a.replace("{connection_file}", path) for a in args.kernel_argv]
        log(f"registration port {port}; spawning {kernel_argv}")
        proc = subprocess.Popen(kernel_argv, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
        ports = wait_for_handshake(reg, session, proc, path, args.timeout)
        reg.close()  # linger lets the reply go out
        kernel_info = query_kernel(ports, key, args.timeout)
        stop_kernel(proc, SHUTDOWN_GRACE)
        log(f"kernel exited with status {proc.returncode}")
        return {"registered": True, "ports": ports, "kernel_info": kernel_info}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        reg.close(linger=0)
        context.term()
        shutil.rmtree(tmpdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    global _VERBOSE
    args = parse_args(argv)
    _VERBOSE = args.verbose
    # Turn SIGTERM into SystemExit so that the kernel is killed and files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args)
    except LaunchError as e:
        print(f"posit_launcher: error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:  # e.g. kernel executable not found
        print(f"posit_launcher: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # noqa: BLE001
        print(f"posit_launcher: error: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
