#!/usr/bin/env python3
"""Turns the raw outputs of bench/run.sh into bench/results.md: a summary with the ratios the
targets of issue 7 name, computed from this run's medians, then the raw outputs."""

from __future__ import annotations

import json
import os
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
        # A benchmark without arguments: its figures are on its own line.
        flat = re.match(r"^[├╰]─ (\w+)\s+([\d.]+) (\S+)\s+│\s+([\d.]+) (\S+)\s+│\s+([\d.]+) (\S+)", line)
        if flat:
            medians[(flat.group(1), "")] = float(flat.group(6)) * UNITS[flat.group(7)]
            continue
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


def verdict(met: bool, how_far: str) -> str:
    return f"met ({how_far})" if met else f"**missed** ({how_far})"


def targets(rust, loops, py, no_alloc: str) -> list[str]:
    """The issue 7 targets, each judged from this run's medians, with the margin either way."""
    rows = []
    for size in SIZES:
        ratio = rust[("receive", str(size))] / rust[("raw_hmac", str(size))]
        limit = 1.25 if size >= 65536 else 1.3
        rows.append((f"decode+verify {size} B ≤ {limit}× raw HMAC", f"{ratio:.2f}×",
                     verdict(ratio <= limit, f"{abs(ratio / limit - 1) * 100:.0f}% {'under' if ratio <= limit else 'over'} the limit")))
    speedup = py[("py_deserialize", 256)]["median_ns"] / rust[("receive", "256")]
    rows.append(("decode+verify 256 B ≥ 20× faster than `Session.deserialize`", f"{speedup:.0f}×",
                 verdict(speedup >= 20, f"{speedup / 20:.1f}× the target")))
    for dialect in ("posit", "upstream"):
        rate = 1e9 / rust[("in_memory_handshake", dialect)]
        rows.append((f"in-memory handshakes, {dialect} dialect ≥ 100,000 /s", f"{rate:,.0f} /s",
                     verdict(rate >= 100_000, f"{rate / 100_000:.2f}× the target")))
    median = loops["loopback"]["median_ns"]
    rows.append(("loopback handshake median < 1 ms", fmt(median),
                 verdict(median < 1e6, f"{abs(median / 1e6 - 1) * 100:.0f}% {'under' if median < 1e6 else 'over'} the limit")))
    passed = "test result: ok" in no_alloc
    rows.append(("zero allocations, received frames → verified message (`core/tests/no_alloc.rs`)",
                 "0 allocations" if passed else "test failed",
                 verdict(passed, "counting allocator")))
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return lines


REGISTRAR_LOADS = ((1, 1), (100, 1), (1000, 1), (10000, 1), (100, 100), (1000, 100), (10000, 100))


def registrar_section(reg: dict[tuple[str, str], float]) -> list[str]:
    """Issue 11: the cost of one message with H launches held (P pending), judged in this run."""
    raw = reg[("raw_hmac", "")]
    lines = ["", "## Registrar: one message with H launches held, P pending (issue 11)", "",
             f"Raw HMAC-SHA256 of the request's 283 signed bytes, pre-keyed: {fmt(raw)}.", "",
             "| load | forged request | valid request (+ re-arm) | forged / (P × raw HMAC) |", "|---|---|---|---|"]
    for held, pending in REGISTRAR_LOADS:
        arg = f"H={held}/P={pending}"
        forged, valid = reg[("forged", arg)], reg[("valid", arg)]
        lines.append(f"| H = {held:,}, P = {pending} | {fmt(forged)} | {fmt(valid)} | {forged / (pending * raw):.2f}× |")
    rows = []
    for pending, base in ((1, 1), (100, 100)):
        for kind in ("forged", "valid"):
            ratio = reg[(kind, f"H=10000/P={pending}")] / reg[(kind, f"H={base}/P={pending}")]
            rows.append((f"{kind}, P = {pending}: H = 10,000 within 1.3× of H = {base}", f"{ratio:.2f}×",
                         verdict(ratio <= 1.3, f"{abs(ratio / 1.3 - 1) * 100:.0f}% {'under' if ratio <= 1.3 else 'over'} the limit")))
    ratio = reg[("forged", "H=10000/P=100")] / (100 * raw)
    rows.append(("forged, P = 100, H = 10,000: within 1.2 × P raw HMACs", f"{ratio:.2f}×",
                 verdict(ratio <= 1.2, f"{abs(ratio / 1.2 - 1) * 100:.0f}% {'under' if ratio <= 1.2 else 'over'} the limit")))
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "(At P = 100 there is no H = 1: the H = 100 figure is the base.)"]
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    codec_text = (out / "codec.txt").read_text()
    handshake_text = (out / "handshake.txt").read_text()
    python_text = (out / "python.jsonl").read_text()
    no_alloc_path = out / "no_alloc.txt"
    no_alloc = no_alloc_path.read_text() if no_alloc_path.exists() else ""
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
                 f"`{subprocess.run(['rustc', '--version'], capture_output=True, text=True).stdout.strip()}`, Python {platform.python_version()}. "
                 "Medians; every ratio below is computed from this run's medians. "
                 f"Load average when the run ended (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    lines += ["", "## Targets (issue 7)", ""]
    lines += targets(rust, loops, py, no_alloc)
    lines += ["", "## Codec (per message)", "",
              "Receiving: decode+verify (`wire::split` + `verify`) against the raw HMAC-SHA256 of the same bytes "
              "and against jupyter_client's `Session.deserialize` (which also parses the JSON: the "
              "\"+ JSON parse\" column is the like-for-like figure).", "",
              "| content | decode+verify | raw HMAC | ratio (target ≤ 1.25× at ≥ 64 KiB, ≤ 1.3× all) | + JSON parse | jupyter_client `deserialize` | speed-up vs deserialize (target ≥ 20× at 256 B) |",
              "|---|---|---|---|---|---|---|"]
    for size in SIZES:
        receive = rust[("receive", str(size))]
        raw = rust[("raw_hmac", str(size))]
        parse = rust[("receive_and_parse", str(size))]
        de = py[("py_deserialize", size)]["median_ns"]
        lines.append(
            f"| {size} B | {fmt(receive)} | {fmt(raw)} | {receive / raw:.2f}× | {fmt(parse)} | {fmt(de)} | "
            f"{de / receive:.0f}× ({de / parse:.1f}× with parsing) |"
        )
    lines += ["", "Sending: `Signer::sign` against `Session.sign`, and sign+encode (`Session::message`: header, "
              "signature, frames) against `Session.serialize`; the raw HMAC in Python (OpenSSL) for reference.", "",
              "| content | sign | `Session.sign` | Python / Rust | sign+encode | `Session.serialize` | Python / Rust | raw HMAC, Python |",
              "|---|---|---|---|---|---|---|---|"]
    for size in SIZES:
        sign = rust[("sign", str(size))]
        send = rust[("send", str(size))]
        py_sign = py[("py_sign", size)]["median_ns"]
        ser = py[("py_serialize", size)]["median_ns"]
        py_raw = py[("py_raw_hmac", size)]["median_ns"]
        lines.append(
            f"| {size} B | {fmt(sign)} | {fmt(py_sign)} | {py_sign / sign:.1f}× | {fmt(send)} | {fmt(ser)} | "
            f"{ser / send:.1f}× | {fmt(py_raw)} |"
        )
    lines += ["", "## Handshakes", "", "| what | median | p99 | rate |", "|---|---|---|---|"]
    for dialect in ("posit", "upstream"):
        ns = rust[("in_memory_handshake", dialect)]
        lines.append(f"| in-memory handshake, {dialect} dialect (target ≥ 100,000/s) | {fmt(ns)} | | {1e9 / ns:,.0f} /s |")
    lb = loops["loopback"]
    lines.append(f"| loopback, blocking adapter, bound → both Connected, n={lb['samples']} (target median < 1 ms) | {fmt(lb['median_ns'])} | {fmt(lb['p99_ns'])} | |")
    pl = py[("py_loopback", None)]
    lines.append(f"| loopback, Python (pyzmq + jupyter_client Session), n={pl['samples']} | {fmt(pl['median_ns'])} | {fmt(pl['p99_ns'])} | |")
    lines.append(f"| loopback, Python / Rust | {pl['median_ns'] / lb['median_ns']:.2f}× | {pl['p99_ns'] / lb['p99_ns']:.2f}× | |")
    for n in (1, 10, 100):
        record = loops[f"launch_{n}"]
        lines.append(f"| launch {n} demo kernel(s) through one Registrar: time to Connected, n={record['samples']} | {fmt(record['median_ns'])} | {fmt(record['p99_ns'])} | {record['per_second']:.0f} launches/s |")
    registrar_path = out / "registrar.txt"
    registrar_text = registrar_path.read_text() if registrar_path.exists() else ""
    if registrar_text:
        lines += registrar_section(parse_divan(registrar_text))
    lines += ["", "## Raw output", "", "### `cargo bench -p jupyter-handshake --bench codec`", "", "```", codec_text.rstrip(), "```", "",
              "### `cargo bench -p jupyter-handshake-cli --bench handshake`", "", "```", handshake_text.rstrip(), "```", "",
              "### `python3 bench/python_bench.py`", "", "```", python_text.rstrip(), "```", ""]
    if registrar_text:
        lines += ["### `cargo bench -p jupyter-handshake --bench registrar`", "", "```", registrar_text.rstrip(), "```", ""]
    if no_alloc:
        lines += ["### `cargo test -p jupyter-handshake --test no_alloc`", "", "```", no_alloc.rstrip(), "```", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
