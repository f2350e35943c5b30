#!/usr/bin/env python3
"""Turns the raw outputs of bench/run.sh into bench/results.md: a summary with the ratios the
targets of issue 7 name, computed from this run's medians, then the raw outputs."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

UNITS = {"ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
SIZES = (256, 4096, 65536, 1048576)


def parse_divan(text: str) -> dict[tuple[str, str], float]:
    """{(bench, arg): median_ns} from divan's table (the third time column is the median)."""
    medians = {}
    group = None
    for line in text.splitlines():
        head = re.match(r"^[├╰]─ (\w+)\s", line)
        if head:
            group = head.group(1)
            continue
        row = re.match(r"^[│ ]\s+[├╰]─ (\S+)\s+([\d.]+) (\S+)\s+│\s+([\d.]+) (\S+)\s+│\s+([\d.]+) (\S+)", line)
        if row and group:
            medians[(group, row.group(1))] = float(row.group(6)) * UNITS[row.group(7)]
    return medians


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main() -> None:
    out = Path(sys.argv[1])
    codec_text = (out / "codec.txt").read_text()
    handshake_text = (out / "handshake.txt").read_text()
    python_text = (out / "python.jsonl").read_text()
    rust = parse_divan(codec_text)
    loops = {}
    for line in handshake_text.splitlines():
        if line.startswith("JSON "):
            record = json.loads(line[5:])
            loops[record["bench"]] = record
    py = {}
    for line in python_text.splitlines():
        record = json.loads(line)
        py[(record["bench"], record.get("size"))] = record

    lines = ["# Benchmark results", ""]
    lines.append(f"Last run: `bash bench/run.sh`, on {cpu_model()} ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores), "
                 f"`{subprocess.run(['rustc', '--version'], capture_output=True, text=True).stdout.strip()}`, Python {platform.python_version()}. Medians.")
    lines += ["", "## Codec (per message)", "",
              "| content | decode+verify | raw HMAC | ratio (target ≤ 1.25× at ≥ 64 KiB, ≤ 1.3× all) | + JSON parse | jupyter_client `deserialize` | speed-up vs deserialize (target ≥ 20× at 256 B) | sign+encode | `serialize` |",
              "|---|---|---|---|---|---|---|---|---|"]
    for size in SIZES:
        receive = rust[("receive", str(size))]
        raw = rust[("raw_hmac", str(size))]
        parse = rust[("receive_and_parse", str(size))]
        send = rust[("send", str(size))]
        de = py[("py_deserialize", size)]["median_ns"]
        ser = py[("py_serialize", size)]["median_ns"]
        lines.append(
            f"| {size} B | {fmt(receive)} | {fmt(raw)} | {receive / raw:.2f}× | {fmt(parse)} | {fmt(de)} | "
            f"{de / receive:.0f}× ({de / parse:.0f}× with parsing) | {fmt(send)} | {fmt(ser)} |"
        )
    lines += ["", "## Handshakes", "", "| what | median | p99 | rate |", "|---|---|---|---|"]
    for dialect in ("posit", "upstream"):
        ns = rust[("in_memory_handshake", dialect)]
        lines.append(f"| in-memory handshake, {dialect} dialect (target ≥ 100,000/s) | {fmt(ns)} | | {1e9 / ns:,.0f} /s |")
    lb = loops["loopback"]
    lines.append(f"| loopback, blocking adapter, bound → both Connected, n={lb['samples']} (target median < 1 ms) | {fmt(lb['median_ns'])} | {fmt(lb['p99_ns'])} | |")
    pl = py[("py_loopback", None)]
    lines.append(f"| loopback, Python (pyzmq + jupyter_client Session), n={pl['samples']} | {fmt(pl['median_ns'])} | {fmt(pl['p99_ns'])} | |")
    for n in (1, 10, 100):
        record = loops[f"launch_{n}"]
        lines.append(f"| launch {n} demo kernel(s) through one Registrar: time to Connected | {fmt(record['median_ns'])} | {fmt(record['p99_ns'])} | {record['per_second']:.0f} launches/s |")
    lines += ["", "## Raw output", "", "### `cargo bench -p jupyter-handshake --bench codec`", "", "```", codec_text.rstrip(), "```", "",
              "### `cargo bench -p jupyter-handshake-zmq --bench handshake`", "", "```", handshake_text.rstrip(), "```", "",
              "### `python3 bench/python_bench.py`", "", "```", python_text.rstrip(), "```", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
