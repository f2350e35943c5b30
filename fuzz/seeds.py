#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets from real messages and known crashers.

Run from the workspace root:  python3 fuzz/seeds.py
The byte layouts mirror the decoders in core/src/fuzzing.rs: a one-byte choice is taken modulo
the number of choices, a length or wide integer is big-endian, only as many bytes as its range
needs. Seeds come from the golden jupyter_client frames (core/tests/fixtures/golden.json), the
registration files of each dialect and mode, and the inputs known to crash other Jupyter
implementations (shared/anchors.md, C2).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DELIM = b"<IDS|MSG>"


def take(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def frames(fs: list[bytes]) -> bytes:
    out = bytes([len(fs)])
    for f in fs:
        out += b"\x00" if f == DELIM else b"\x01" + take(f)
    return out


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def sign(key: str, parts: list[bytes], digest=hashlib.sha256) -> bytes:
    mac = hmac.new(key.encode(), digestmod=digest)
    for p in parts:
        mac.update(p)
    return mac.hexdigest().encode()


SCHEMES = {"hmac-sha256": 0, "hmac-sha384": 1, "hmac-sha512": 2}


def golden() -> list[dict]:
    doc = json.loads((ROOT / "core/tests/fixtures/golden.json").read_text())
    for case in doc["cases"]:
        case["frames"] = [bytes.fromhex(h) for h in case["frames_hex"]]
    return doc["cases"]


def golden_upstream() -> list[dict]:
    """The upstream-dialect cases: [ids..., <IDS|MSG>, HMAC(content), content]."""
    doc = json.loads((ROOT / "core/tests/fixtures/golden.json").read_text())
    for case in doc.get("upstream_cases", []):
        case["frames"] = [bytes.fromhex(h) for h in case["frames_hex"]]
    return doc.get("upstream_cases", [])


def crashers(key: str) -> dict[str, list[bytes]]:
    header = b'{"msg_id":"a","session":"s","username":"u","date":"2026-01-01T00:00:00Z","msg_type":"handshake_request","version":"5.5"}'
    content = b'{"control_port":1,"shell_port":2,"stdin_port":3,"iopub_port":4,"hb_port":5}'
    parts = [header, b"{}", b"{}", content]
    good = sign(key, parts)
    return {
        "delimiter-last": [b"id", DELIM],
        "signature-plus-three": [DELIM, good, header, b"{}", b"{}"],
        "empty-signature-with-key": [DELIM, b"", *parts],
        "short-signature": [DELIM, good[:63], *parts],
        "long-signature": [DELIM, good + b"0", *parts],
        "uppercase-hex": [DELIM, good.upper(), *parts],
        "buffers-after-content": [DELIM, good, *parts, b"\x00\xff", b"buffer"],
        "parent-empty-object": [DELIM, sign(key, [header, b"{}", b"{}", content]), header, b"{}", b"{}", content],
        "parent-null": [DELIM, sign(key, [header, b"null", b"{}", content]), header, b"null", b"{}", content],
        "delimiter-as-identity-twice": [DELIM, DELIM, good, *parts],
    }


def main() -> None:
    cases = golden()
    key = cases[0]["key"]
    for case in cases:
        write("wire_split", case["name"], frames(case["frames"]) + b"\x00")
        write(
            "verify",
            case["name"],
            take(case["key"].encode()) + bytes([SCHEMES[case["signature_scheme"]], 1]) + frames(case["frames"]),
        )
    for case in golden_upstream():
        write("wire_split", case["name"], frames(case["frames"]) + b"\x00")
        write(
            "verify",
            case["name"],
            take(case["key"].encode()) + bytes([SCHEMES[case["signature_scheme"]], 1]) + frames(case["frames"]),
        )
    for name, fs in crashers(key).items():
        write("wire_split", name, frames(fs) + b"\x00")
        write("verify", name, take(key.encode()) + bytes([0, 1]) + frames(fs))

    files = {
        "kallichore-registration": {"transport": "tcp", "signature_scheme": "hmac-sha256", "ip": "127.0.0.1", "key": key, "registration_port": 53817},
        "handshake-port-alias": {"transport": "tcp", "signature_scheme": "hmac-sha256", "ip": "0.0.0.0", "key": key, "handshake_port": 40885},
        "ipykernel-rewrite": {"shell_port": 40001, "iopub_port": 40002, "stdin_port": 40003, "control_port": 40004, "hb_port": 40005,
                               "ip": "127.0.0.1", "key": key, "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "", "registration_port": 53817},
        "jupyter-client-curve": {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1", "key": key,
                                  "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "python3",
                                  "curve_publickey": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "curve_secretkey": "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"},
        "upstream-xeus-registration": {"kernel_id": "k-1", "transport": "tcp", "ip": "127.0.0.1", "registration_ip": "127.0.0.1",
                                        "registration_port": "50000", "signature_scheme": "hmac-sha256", "key": key},
        "upstream-docs-example": {"kernel_id": "k-2", "transport": "tcp", "registration_ip": "127.0.0.1", "registration_port": 51587,
                                   "signature_scheme": "hmac-sha256", "key": key},
        "ipc-classic": {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "/tmp/kernel",
                         "key": "", "transport": "ipc", "signature_scheme": "hmac-sha256"},
        "partial-ports": {"shell_port": 1, "ip": "127.0.0.1", "key": key, "transport": "tcp", "signature_scheme": "hmac-sha256"},
    }
    for name, doc in files.items():
        write("connection_file", name, json.dumps(doc, indent=2).encode())
    write("connection_file", "truncated-rewrite", json.dumps(files["ipykernel-rewrite"]).encode()[:57])

    # Kernel machine: header [classic?][wait?][ack ms: 2 bytes], steps [dt: 2 bytes][op][args].
    ports = bytes([1, 2, 3, 4, 5])
    head = bytes([1, 0]) + (1000).to_bytes(2, "big")
    bound = b"\x00\x00" + b"\x00" + ports
    connect = b"\x00\x00" + b"\x01"
    write("kernel_machine", "connects", head + bound + connect + b"\x00\x05" + b"\x04")
    write("kernel_machine", "refused", head + bound + connect + b"\x00\x05" + b"\x05")
    write("kernel_machine", "garbage-then-ok", head + bound + connect + b"\x00\x01\x07" + frames([DELIM, b"x"]) + b"\x00\x01\x04")
    write("kernel_machine", "times-out", head + bound + connect + b"\x02\x58\x03" + b"\x02\x58\x03")
    write("kernel_machine", "iopub-wait", bytes([1, 1]) + (1000).to_bytes(2, "big") + bound + connect + b"\x00\x05\x04" + b"\x00\x05\x02")
    write("kernel_machine", "classic", bytes([0]) + ports + bytes([0]) + (1000).to_bytes(2, "big") + bound)

    # Launcher machine: header [timeout ms: 2 bytes], steps [dt: 2 bytes][op][args].
    lhead = (3000).to_bytes(2, "big")
    bind = b"\x00\x00" + b"\x00" + (5555).to_bytes(2, "big")
    write("launcher_machine", "request", lhead + bind + b"\x00\x05\x01" + ports)
    write("launcher_machine", "file-rewrite", lhead + bind + b"\x00\x05\x04\x01" + ports + b"\x00")
    write("launcher_machine", "foreign-rewrite-then-request", lhead + bind + b"\x00\x05\x04\x01" + ports + b"\x01" + b"\x00\x05\x01" + ports)
    write("launcher_machine", "garbage-then-request", lhead + bind + b"\x00\x01\x03" + frames([b"peer", b"", DELIM, b""]) + b"\x00\x01\x01" + ports)
    write("launcher_machine", "kernel-exits", lhead + bind + b"\x00\x05\x05\x03")
    write("launcher_machine", "bad-ports-then-good", lhead + bind + b"\x00\x01\x01" + bytes([0, 1, 1, 2, 3]) + b"\x00\x01\x01" + ports)


if __name__ == "__main__":
    main()
