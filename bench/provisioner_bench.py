#!/usr/bin/env python3
"""Time from `start_kernel` to the first `kernel_info_reply`, stock ipykernel, through
jupyter_client's AsyncKernelManager: LocalProvisioner vs jupyter-handshake-provisioner, the same
kernelspec (argv, kernel_protocol_version 5.5) but for the provisioner, interleaved in one run
(ABAB... then BABA..., so drift hits both alike).

One round: `await km.start_kernel()`, a client, one `kernel_info_request` sent at once, the
clock stops when its reply arrives. (With LocalProvisioner `start_kernel` returns when the
process is spawned, and the request waits in the client's queue until the kernel has bound
its ports and libzmq has reconnected; with ours `start_kernel` returns once the kernel has
registered, its ports bound, so the request goes straight out.) The kernel is shut down
outside the timed region.

    python3 bench/provisioner_bench.py [--rounds 20] [--markdown bench/provisioner_results.md]

Needs `pip install ./adapters/python` and the peers of tests/python/requirements.txt.
Prints one JSON object per round and a summary: medians, the ratio ours / LocalProvisioner,
and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

KINDS = {"local": "LocalProvisioner", "handshake": "jupyter-handshake-provisioner"}


def write_kernelspecs(root: str) -> None:
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    for kind in KINDS:
        spec = {"argv": argv, "display_name": kind, "language": "python",
                "kernel_protocol_version": "5.5"}
        if kind == "handshake":
            spec["metadata"] = {"kernel_provisioner": {
                "provisioner_name": "jupyter-handshake-provisioner"}}
        d = os.path.join(root, "kernels", f"bench-{kind}")
        os.makedirs(d)
        with open(os.path.join(d, "kernel.json"), "w") as f:
            json.dump(spec, f)


async def one_round(kind: str, runtime: str) -> float | None:
    """Seconds to the first kernel_info_reply; None if the launch failed (a LocalProvisioner
    kernel can lose the port race on a busy machine: it then dies with EADDRINUSE)."""
    from jupyter_client import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=f"bench-{kind}",
                            connection_file=os.path.join(runtime, f"kernel-{uuid.uuid4()}.json"))
    start = time.perf_counter()
    elapsed = None
    kc = None
    try:
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        msg_id = kc.kernel_info()
        while True:
            reply = await kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                elapsed = time.perf_counter() - start
                break
    except Exception as e:
        print(json.dumps({"provisioner": KINDS[kind], "failed": f"{type(e).__name__}: {e}"}),
              flush=True)
    finally:
        if kc is not None:
            kc.stop_channels()
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
        else:
            await km.cleanup_resources()
    return elapsed


async def main(rounds: int) -> dict:
    root = tempfile.mkdtemp(prefix="provisioner-bench-")
    write_kernelspecs(root)
    runtime = os.path.join(root, "runtime")
    os.makedirs(runtime, mode=0o700)
    os.environ["JUPYTER_PATH"] = root
    os.environ["JUPYTER_RUNTIME_DIR"] = runtime
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    failed = {kind: 0 for kind in KINDS}
    load_before = os.getloadavg()
    await one_round("local", runtime)  # warm the page cache for both
    await one_round("handshake", runtime)
    for i in range(rounds):
        order = list(KINDS) if i % 2 == 0 else list(reversed(KINDS))
        for kind in order:
            seconds = await one_round(kind, runtime)
            if seconds is None:
                failed[kind] += 1
                continue
            samples[kind].append(seconds)
            print(json.dumps({"round": i, "provisioner": KINDS[kind], "seconds": seconds}),
                  flush=True)
    load_after = os.getloadavg()
    medians = {kind: statistics.median(v) for kind, v in samples.items()}
    return {
        "rounds": rounds,
        "failed": {KINDS[k]: n for k, n in failed.items()},
        "median_s": {KINDS[k]: m for k, m in medians.items()},
        "min_s": {KINDS[k]: min(v) for k, v in samples.items()},
        "max_s": {KINDS[k]: max(v) for k, v in samples.items()},
        "ratio_ours_over_local": medians["handshake"] / medians["local"],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
    }


def markdown(summary: dict) -> str:
    rows = "\n".join(
        f"| {name} | {summary['median_s'][name] * 1000:.0f} | {summary['min_s'][name] * 1000:.0f}"
        f" | {summary['max_s'][name] * 1000:.0f} | {summary['failed'][name]} |"
        for name in KINDS.values())
    before = ", ".join(f"{x:.2f}" for x in summary["loadavg_before"])
    after = ", ".join(f"{x:.2f}" for x in summary["loadavg_after"])
    return f"""## Provisioner: `start_kernel` to the first `kernel_info_reply` (stock ipykernel)

`python3 bench/provisioner_bench.py --rounds {summary['rounds']}`: n = {summary['rounds']} each,
interleaved, same kernelspec, {summary['cpus']} CPUs; load average {before} before, {after} after.

| provisioner | median ms | min ms | max ms | failed launches |
|---|---|---|---|---|
{rows}

Ratio of the medians, ours / LocalProvisioner: **{summary['ratio_ours_over_local']:.3f}**
(target ≤ 1.0).
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--markdown", help="also write the summary as markdown to this file")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    summary = asyncio.run(main(args.rounds))
    print(json.dumps(summary))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(summary))
    print(markdown(summary), file=sys.stderr)
