#!/usr/bin/env python3
"""Start a kernel from an installed kernelspec with jupyter_client's KernelManager, talk to it.

Usage:

    python3 tests/python/kernel_manager_roundtrip.py KERNEL_NAME [CODE]

The kernelspec is looked up the way Jupyter does (set JUPYTER_PATH to find a
kernelspec installed in a private directory; set JUPYTER_RUNTIME_DIR to keep the
connection file out of the user's runtime dir). jupyter_client 8 has no JEP 66
launcher, so this is a classic launch: it picks five ports, writes a classic
connection file and starts the kernelspec's argv.

Steps: ``KernelManager(kernel_name=...).start_kernel()``, ``client.wait_for_ready``,
``kernel_info``, two ``execute_interactive`` round trips of CODE (collecting
every IOPub message parented to each request), ``shutdown_kernel(now=False)``
(a ``shutdown_request``, then a wait; jupyter_client kills only after its grace
period), then one JSON line on stdout:

    {"kernelspec": {"resource_dir", "argv", "kernel_protocol_version", "language"},
     "connection_file": {"has_five_ports": bool, "registration_port": bool},
     "kernel_info": {...reply content...},
     "executions": [{"reply": {...}, "iopub": [[msg_type, content], ...]}, ...],
     "exit_code": int | null}

Exit status 0 when all of that ran (the Rust test judges the values), 1 on an
exception (one line ``kernel_manager_roundtrip: error: ...`` on stderr).
"""

from __future__ import annotations

import json
import os
import sys

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

TIMEOUT = 30.0
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def run(name: str, code: str) -> dict:
    spec_dir = KernelSpecManager().find_kernel_specs()[name]
    with open(os.path.join(spec_dir, "kernel.json"), encoding="utf-8") as f:
        spec = json.load(f)

    km = KernelManager(kernel_name=name)
    km.start_kernel()
    process = getattr(km.provisioner, "process", None)
    kc = None
    try:
        with open(km.connection_file, encoding="utf-8") as f:
            connection = json.load(f)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]

        executions = []
        for _ in range(2):
            iopub: list = []
            reply = kc.execute_interactive(
                code,
                timeout=TIMEOUT,
                output_hook=lambda msg, iopub=iopub: iopub.append([msg["msg_type"], msg["content"]]),
            )
            executions.append({"reply": reply["content"], "iopub": iopub})
    finally:
        if kc is not None:
            kc.stop_channels()
        # A shutdown_request on control, then jupyter_client waits (and kills only at the end
        # of its grace period).
        km.shutdown_kernel(now=False)
    exit_code = process.poll() if process is not None else None
    return {
        "kernelspec": {
            "resource_dir": spec_dir,
            "argv": spec.get("argv"),
            "kernel_protocol_version": spec.get("kernel_protocol_version"),
            "language": spec.get("language"),
        },
        "connection_file": {
            "has_five_ports": all(isinstance(connection.get(p), int) and connection[p] > 0 for p in PORT_NAMES),
            "registration_port": "registration_port" in connection,
        },
        "kernel_info": info,
        "executions": executions,
        "exit_code": exit_code,
    }


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: kernel_manager_roundtrip.py KERNEL_NAME [CODE]", file=sys.stderr)
        return 2
    code = argv[1] if len(argv) > 1 else "hello from jupyter_client"
    try:
        result = run(argv[0], code)
    except Exception as e:  # noqa: BLE001 - one line for the Rust test to show
        print(f"kernel_manager_roundtrip: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
