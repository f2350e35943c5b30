#!/usr/bin/env bash
# Runs every benchmark in one go on this machine and writes bench/results.md: the raw output
# of each, and a summary whose ratios are computed from the medians measured in this run.
#
#   bash bench/run.sh            # from the workspace root; needs the Python peers
#                                # (pip install -r tests/python/requirements.txt)
#
# Run it on a quiet machine: the numbers are wall-clock medians. CARGO_TARGET_DIR is honoured.
# The handshake bench takes an optional round count: `cargo bench -p jupyter-handshake-cli
# --bench handshake -- 1000` (the default).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
echo "== core codec and in-memory handshakes (divan)" >&2
cargo bench -q -p jupyter-handshake --bench codec | tee "$out/codec.txt"
echo "== one message on a shared registration socket, many launches held (divan)" >&2
cargo bench -q -p jupyter-handshake --bench registrar | tee "$out/registrar.txt"
echo "== loopback handshakes and launch throughput" >&2
cargo bench -q -p jupyter-handshake-cli --bench handshake | tee "$out/handshake.txt"
echo "== jupyter_client and pyzmq" >&2
python3 bench/python_bench.py | tee "$out/python.jsonl"
echo "== allocation count (a test, not a timing)" >&2
cargo test -q -p jupyter-handshake --test no_alloc 2>&1 | tee "$out/no_alloc.txt"
python3 bench/summarize.py "$out" > bench/results.md
sed -n '/^## Targets/,/^## Codec/p' bench/results.md | sed '$d' >&2
echo "wrote bench/results.md" >&2
