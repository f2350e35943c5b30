#!/usr/bin/env python3
"""Generate golden wire-frame fixtures with jupyter_client's real Session.

Run once by developers, from the workspace root:

    python3 tests/python/golden.py > core/tests/fixtures/golden.json

To add or change the upstream-dialect cases without touching the existing
jupyter_client cases (whose ``date`` and ``msg_id`` change on every run), reuse
them: they are checked again with a fresh Session and copied byte for byte.

    python3 tests/python/golden.py --reuse core/tests/fixtures/golden.json > new.json

Every case is built with ``jupyter_client.session.Session.msg`` and serialized
with ``Session.serialize(msg, ident=...)``; buffers are appended after the four
dicts the way ``Session.send`` does it (they are not signed).  Before anything
is written, each frame list is fed back through ``Session.feed_identities`` and
``Session.deserialize`` of a fresh Session with the same key, and the signature
is recomputed independently with ``hmac``, so the fixtures are known-good.

Output is deterministic except for header ``date`` and ``msg_id`` (jupyter_client
builds msg_id as ``<session>_<pid>_<counter>``).

Packer: jupyter_client packs with orjson when it is importable and with the
stdlib json module otherwise.  The two differ on the wire (orjson is compact,
``json.dumps`` puts a space after ``,`` and ``:``).  Each case pins its packer;
the cases whose name ends in ``_orjson`` are only produced when orjson is
installed (a note goes to stderr when they are skipped).

Upstream dialect (jupyter_client docs 5.6, xeus): ``upstream_cases`` holds
frames built here independently of the Rust core: the request content is
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` of
``kernel_id`` and the five ports as strings (what xeus's nlohmann writes), the
signature is HMAC over the content frame alone (computed with ``hmac`` and
checked against ``Session.sign([content])``), and the acknowledgement is the
content ``ACK`` signed the same way.  These cases are fully deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sys

import jupyter_client
from jupyter_client.session import DELIM, Session

try:
    import orjson  # noqa: F401

    HAVE_ORJSON = True
except ModuleNotFoundError:
    HAVE_ORJSON = False

# Fixed session id and username so that everything but date/msg_id is stable.
SESSION_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
USERNAME = "golden"

KEY_SHA256 = "7c2f9a4e1b8d3c6f0a5e2d9b4c7a1f3e"  # 32 hex chars, like Kallichore
KEY_SHA384 = "sha384-key-for-golden-fixtures"
KEY_SHA512 = "sha512-key-for-golden-fixtures-0123456789"
KEY_NON_ASCII = "clé-ключ-鍵-🔑"

# One message counter across all cases, so msg_ids are unique in the file
# (each case gets its own Session, whose counter would otherwise restart at 0).
MESSAGE_COUNTER = itertools.count()

PORTS = {
    "control_port": 50101,
    "shell_port": 50102,
    "stdin_port": 50103,
    "iopub_port": 50104,
    "hb_port": 50105,
}


def make_session(key: str, scheme: str, packer: str) -> Session:
    return Session(
        key=key.encode("utf-8"),
        signature_scheme=scheme,
        session=SESSION_ID,
        username=USERNAME,
        packer=packer,
        unpacker=packer,
    )


def expected_signature(key: str, scheme: str, signed: list[bytes]) -> bytes:
    if key == "":
        return b""
    digest = getattr(hashlib, scheme.split("-", 1)[1])
    mac = hmac.new(key.encode("utf-8"), digestmod=digest)
    for frame in signed:
        mac.update(frame)
    return mac.hexdigest().encode("ascii")


def verify(case: dict, frames: list[bytes], msg: dict, buffers: list[bytes], packer: str) -> None:
    """Check that a fresh jupyter_client Session accepts the frames."""
    key, scheme = case["key"], case["signature_scheme"]
    checker = make_session(key, scheme, packer)
    idents, rest = checker.feed_identities(frames, copy=True)
    assert len(idents) == case["identities"], (case["name"], idents)
    assert frames[len(idents)] == DELIM, case["name"]

    # Independent HMAC over header, parent, metadata, content only.
    sig = rest[0]
    assert sig == expected_signature(key, scheme, rest[1:5]), case["name"]
    if key == "":
        assert sig == b"", case["name"]
    else:
        assert len(sig) == 2 * getattr(hashlib, scheme.split("-", 1)[1])().digest_size
        assert sig == sig.lower()
        if buffers:
            # Including the buffers would give a different signature.
            assert sig != expected_signature(key, scheme, rest[1:]), case["name"]

    got = checker.deserialize(rest, content=True, copy=True)
    assert got["msg_type"] == case["msg_type"], case["name"]
    assert got["msg_id"] == case["msg_id"], case["name"]
    assert got["content"] == msg["content"], case["name"]
    parent_id = got["parent_header"].get("msg_id") if got["parent_header"] else None
    assert parent_id == case["parent_msg_id"], case["name"]
    assert [bytes(b) for b in got["buffers"]] == buffers, case["name"]

    if key != "":
        # A tampered content frame must be rejected by a keyed Session.
        tampered = list(rest)
        tampered[4] = tampered[4][:-1] + b" "
        try:
            make_session(key, scheme, packer).deserialize(tampered)
        except ValueError as e:
            assert "Invalid Signature" in str(e), (case["name"], e)
        else:
            raise AssertionError(f"{case['name']}: tampered message accepted")
        # Replaying the same frames to the same Session is refused.
        try:
            checker.deserialize(rest)
        except ValueError as e:
            assert "Duplicate Signature" in str(e), (case["name"], e)
        else:
            raise AssertionError(f"{case['name']}: replay accepted")


def build(
    name: str,
    *,
    key: str,
    scheme: str,
    msg_type: str,
    content: dict,
    parent: dict | None = None,
    idents: list[bytes] | None = None,
    buffers: list[bytes] | None = None,
    metadata_null: bool = False,
    packer: str = "json",
) -> tuple[dict, dict]:
    session = make_session(key, scheme, packer)
    session.message_count = next(MESSAGE_COUNTER)
    msg = session.msg(msg_type, content=content, parent=parent)
    if metadata_null:
        msg["metadata"] = None  # packed as JSON null
    idents = list(idents or [])
    buffers = list(buffers or [])
    frames = session.serialize(msg, ident=idents) + buffers
    case = {
        "name": name,
        "key": key,
        "signature_scheme": scheme,
        "frames_hex": [f.hex() for f in frames],
        "identities": len(idents),
        "buffers": len(buffers),
        "msg_type": msg_type,
        "msg_id": msg["header"]["msg_id"],
        "parent_msg_id": msg["parent_header"]["msg_id"] if msg["parent_header"] else None,
        "content": content,
    }
    verify(case, frames, msg, buffers, packer)
    return case, msg


# --- Upstream dialect -------------------------------------------------------------------------

UPSTREAM_PORT_FIELDS = ("control_port", "shell_port", "stdin_port", "iopub_port", "hb_port")


def content_only(key: str, scheme: str, content: bytes, idents: list[bytes]) -> list[bytes]:
    """[identities..., <IDS|MSG>, HMAC(content), content], checked two ways."""
    signature = expected_signature(key, scheme, [content])
    assert signature == make_session(key, scheme, "json").sign([content])
    if key == "":
        assert signature == b""
    return [*idents, DELIM, signature, content]


def check_content_only(case: dict, frames: list[bytes]) -> bytes:
    """Independent reading of an upstream frame list: returns the verified content."""
    key, scheme = case["key"], case["signature_scheme"]
    n = case["identities"]
    assert frames[n] == DELIM and len(frames) == n + 3, case["name"]
    signature, content = frames[n + 1], frames[n + 2]
    assert hmac.compare_digest(signature, expected_signature(key, scheme, [content])), case["name"]
    if key != "":
        # Signed over the content frame alone: a changed content fails.
        assert not hmac.compare_digest(
            signature, expected_signature(key, scheme, [content + b" "])
        ), case["name"]
    return content


def upstream_request(
    name: str,
    *,
    key: str,
    scheme: str,
    kernel_id: str,
    ports: dict,
    idents: list[bytes] | None = None,
    string_ports: bool = True,
) -> dict:
    """A kernel's registration, and the ACK a launcher sends back through the same identities."""
    idents = list(idents or [])
    body = {"kernel_id": kernel_id}
    body.update({f: (str(ports[f]) if string_ports else ports[f]) for f in UPSTREAM_PORT_FIELDS})
    content = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    frames = content_only(key, scheme, content, idents)
    ack = content_only(key, scheme, b"ACK", idents)
    case = {
        "name": name,
        "kind": "request",
        "key": key,
        "signature_scheme": scheme,
        "identities": len(idents),
        "kernel_id": kernel_id,
        "ports": dict(ports),
        "string_ports": string_ports,
        "frames_hex": [f.hex() for f in frames],
        "ack_frames_hex": [f.hex() for f in ack],
    }
    got = json.loads(check_content_only(case, frames))
    assert got["kernel_id"] == kernel_id, name
    assert {f: int(got[f]) for f in UPSTREAM_PORT_FIELDS} == ports, name
    assert all(isinstance(got[f], str) == string_ports for f in UPSTREAM_PORT_FIELDS), name
    assert check_content_only(case, ack) == b"ACK", name
    return case


def upstream_reply(name: str, *, key: str, scheme: str, content: bytes, status: str, error=None) -> dict:
    """A launcher's answer as the kernel's DEALER receives it (no identities)."""
    frames = content_only(key, scheme, content, [])
    case = {
        "name": name,
        "kind": "reply",
        "key": key,
        "signature_scheme": scheme,
        "identities": 0,
        "status": status,
        "error": error,
        "frames_hex": [f.hex() for f in frames],
    }
    check_content_only(case, frames)
    return case


def upstream_cases() -> list[dict]:
    kernel_id = "6f1c2b3a-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
    odd_ports = {"control_port": 65535, "shell_port": 1, "stdin_port": 80, "iopub_port": 8888, "hb_port": 443}
    tricky_id = 'ké-ключ-🔑 "quoted" \\ tab\t bell\x07'
    return [
        # As the kernel's DEALER sends it: no identities.
        upstream_request(
            "upstream_request", key=KEY_SHA256, scheme="hmac-sha256", kernel_id=kernel_id, ports=PORTS
        ),
        # As the launcher's ROUTER receives it: the DEALER's routing identity first.
        upstream_request(
            "upstream_request_router",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            kernel_id=kernel_id,
            ports=PORTS,
            idents=[b"\x00k\x8b\x45\x67"],
        ),
        # Non-ASCII and escaped characters in kernel_id, ports of every width, SHA-512.
        upstream_request(
            "upstream_request_sha512_escapes",
            key=KEY_SHA512,
            scheme="hmac-sha512",
            kernel_id=tricky_id,
            ports=odd_ports,
            idents=[b"peer"],
        ),
        # Unsigned session: the signature frame is empty.
        upstream_request(
            "upstream_request_empty_key", key="", scheme="hmac-sha256", kernel_id=kernel_id, ports=PORTS
        ),
        # Integer ports (the jupyter_client docs type them str; a launcher should still read ints).
        upstream_request(
            "upstream_request_integer_ports",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            kernel_id=kernel_id,
            ports=PORTS,
            idents=[b"peer"],
            string_ports=False,
        ),
        # What xeus-zmq's launcher sends, and two JSON answers another launcher might send.
        upstream_reply("upstream_reply_ack", key=KEY_SHA256, scheme="hmac-sha256", content=b"ACK", status="ok"),
        upstream_reply(
            "upstream_reply_ok_json",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            content=json.dumps({"status": "ok"}).encode(),
            status="ok",
        ),
        upstream_reply(
            "upstream_reply_error",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            content=json.dumps({"status": "error", "error": "ports in use"}).encode(),
            status="error",
            error="ports in use",
        ),
    ]


def reverify(case: dict) -> None:
    """Checks a jupyter_client case kept from an earlier run, as when it was generated."""
    frames = [bytes.fromhex(h) for h in case["frames_hex"]]
    buffers = frames[len(frames) - case["buffers"]:] if case["buffers"] else []
    packer = "orjson" if case["name"].endswith("_orjson") and HAVE_ORJSON else "json"
    verify(case, frames, {"content": case["content"]}, buffers, packer)


def main() -> int:
    if sys.argv[1:2] == ["--reuse"] and len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as f:
            previous = json.load(f)
        for case in previous["cases"]:
            reverify(case)
        out = {
            "generator": previous["generator"],
            "cases": previous["cases"],
            "upstream_cases": upstream_cases(),
        }
        sys.stdout.buffer.write(json.dumps(out, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
        return 0
    if sys.argv[1:]:
        print("usage: golden.py [--reuse FIXTURE]", file=sys.stderr)
        return 2
    cases: list[dict] = []
    skipped: list[str] = []

    request_json = None
    for packer in ["json", "orjson"]:
        suffix = "" if packer == "json" else "_orjson"
        if packer == "orjson" and not HAVE_ORJSON:
            skipped.extend(["handshake_request_orjson", "handshake_reply_ok_router_orjson"])
            continue

        # Kernel -> launcher over REQ/REP: no identities, five integer ports.
        req_case, req = build(
            "handshake_request" + suffix,
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="handshake_request",
            content=dict(PORTS),
            packer=packer,
        )
        cases.append(req_case)
        if packer == "json":
            request_json = req

        # Launcher -> kernel, as written on a ROUTER facing a REQ peer:
        # [peer identity, empty envelope delimiter, <IDS|MSG>, ...].
        ok_case, _ = build(
            "handshake_reply_ok_router" + suffix,
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="handshake_reply",
            content={"status": "ok"},
            parent=req,
            idents=[b"someid", b""],
            packer=packer,
        )
        cases.append(ok_case)

    # Error reply as a REP socket would send it (no identities at app level).
    req = request_json
    cases.append(
        build(
            "handshake_reply_error",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="handshake_reply",
            content={"status": "error", "error": "ports in use"},
            parent=req,
        )[0]
    )
    # Kallichore-shaped reply (metadata JSON null, extra "capabilities").
    cases.append(
        build(
            "handshake_reply_ok_capabilities_metadata_null",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="handshake_reply",
            content={"status": "ok", "capabilities": {}},
            parent=req,
            metadata_null=True,
        )[0]
    )

    # Reply to the request our own kernel machine sends first when its session id is
    # "golden-kernel" (msg_id "golden-kernel_1"): lets core feed jupyter_client's reply
    # straight into a KernelHandshake.
    core_request_header = {
        "msg_id": "golden-kernel_1",
        "session": "golden-kernel",
        "username": "kernel",
        "date": "2026-11-28T04:00:00.000000Z",
        "msg_type": "handshake_request",
        "version": "5.5",
    }
    cases.append(
        build(
            "handshake_reply_to_core_kernel",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="handshake_reply",
            content={"status": "ok"},
            parent=core_request_header,
        )[0]
    )

    cases.append(
        build(
            "kernel_info_request_sha384",
            key=KEY_SHA384,
            scheme="hmac-sha384",
            msg_type="kernel_info_request",
            content={},
        )[0]
    )
    cases.append(
        build(
            "kernel_info_request_sha512",
            key=KEY_SHA512,
            scheme="hmac-sha512",
            msg_type="kernel_info_request",
            content={},
        )[0]
    )

    # Two raw binary buffers after the content; NOT covered by the signature.
    cases.append(
        build(
            "comm_msg_two_buffers",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="comm_msg",
            content={"comm_id": "c0ffee00-0000-4000-8000-000000000001", "data": {"n": 2}},
            idents=[b"\x00\x80\x00\x41\xa7"],
            buffers=[bytes([0, 1, 2, 3, 0x7F, 0x80, 0xFE, 0xFF]), "µ-buffer\n".encode("utf-8")],
        )[0]
    )

    # Non-ASCII content (BMP, astral plane, escapes); raw UTF-8 on the wire.
    unicode_content = {
        "code": "print('héllo wörld — Ωμέγα 日本語 🎉')\n",
        "silent": False,
        "store_history": True,
        "user_expressions": {"ключ": "\"quoted\"\t\\"},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    cases.append(
        build(
            "execute_request_unicode",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="execute_request",
            content=unicode_content,
            idents=[b"dealer-identity"],
        )[0]
    )
    if HAVE_ORJSON:
        cases.append(
            build(
                "execute_request_unicode_orjson",
                key=KEY_SHA256,
                scheme="hmac-sha256",
                msg_type="execute_request",
                content=unicode_content,
                idents=[b"dealer-identity"],
                packer="orjson",
            )[0]
        )
    else:
        skipped.append("execute_request_unicode_orjson")

    # Empty key: signature frame is empty, nothing is verified.
    cases.append(
        build(
            "handshake_request_empty_key",
            key="",
            scheme="hmac-sha256",
            msg_type="handshake_request",
            content=dict(PORTS),
        )[0]
    )

    # Key with non-ASCII characters: HMAC key = UTF-8 bytes of the string.
    cases.append(
        build(
            "handshake_request_non_ascii_key",
            key=KEY_NON_ASCII,
            scheme="hmac-sha256",
            msg_type="handshake_request",
            content=dict(PORTS),
        )[0]
    )

    # IOPub-style message with one topic prefix frame.
    cases.append(
        build(
            "status_iopub_topic",
            key=KEY_SHA256,
            scheme="hmac-sha256",
            msg_type="status",
            content={"execution_state": "idle"},
            idents=[b"kernel.0f1e2d3c.status"],
            parent=req,
        )[0]
    )

    out = {
        "generator": f"jupyter_client {jupyter_client.__version__} via tests/python/golden.py",
        "cases": cases,
        "upstream_cases": upstream_cases(),
    }
    if skipped:
        print("golden.py: orjson not installed, skipped: " + ", ".join(skipped), file=sys.stderr)
    sys.stdout.buffer.write(json.dumps(out, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
