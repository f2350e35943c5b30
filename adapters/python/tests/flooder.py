"""A flooding process for the tests: `bench/flood.py`'s flooder (CONNS unauthenticated DEALER
connections to the registration port on 127.0.0.1, each sending forged messages with FRAME-byte
frames, a signature no key verifies, as fast as libzmq takes them), until it is killed.

    python3 flooder.py PORT CONNS FRAME
"""

import multiprocessing
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "bench"))
import flood  # noqa: E402

if __name__ == "__main__":
    port, conns, frame = map(int, sys.argv[1:4])
    flood.FRAME = frame
    # Never set: the test kills this process.
    flood.flooder(port, conns, "forged", multiprocessing.Event(), multiprocessing.Queue())
