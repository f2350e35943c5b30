"""The core's machines through the binding: a full handshake in memory, both dialects."""

import pytest

import jupyter_handshake as jh

NOW = 1_700_000_000_000_000
KEY = "0123456789abcdef-secret-key"


def drain(machine):
    """Every output up to the final ("timeout", deadline), which is returned last."""
    out = []
    while True:
        item = machine.poll_output()
        out.append(item)
        if item[0] == "timeout":
            return out


def bound_registrar(port=5555):
    r = jh.Registrar()
    first = drain(r)
    assert first[0] == ("bind_registration", "tcp", "127.0.0.1")
    r.registration_bound(NOW, port)
    return r


def registration_file(r, launch):
    files = [o for o in drain(r) if o[0] == "write_registration_file"]
    assert [f[1] for f in files] == [launch]
    return files[0][2]


def kernel_registers(file_bytes):
    """Drives a Kernel up to its request; returns the kernel and the frames it sends."""
    k = jh.Kernel(file_bytes, session_id="test-kernel")
    (action, transport, ip, ports), *_ = drain(k)
    assert (action, transport, ip, ports) == ("bind_channels", "tcp", "127.0.0.1", None)
    k.bound(NOW, 40001, 40002, 40003, 40004, 40005)
    outputs = drain(k)
    connect = [o for o in outputs if o[0] == "connect_registration"]
    assert connect[0][1] == "tcp://127.0.0.1:5555"
    k.registration_connected(NOW)
    sent = [o[1] for o in drain(k) if o[0] == "transmit"]
    assert k.state == "awaiting_reply"
    return k, connect[0][2], sent


@pytest.mark.parametrize("dialect,socket", [("posit", "req"), ("upstream", "dealer")])
def test_a_full_handshake_in_memory(dialect, socket):
    r = bound_registrar()
    launch = r.launch(NOW, KEY, dialect, kernel_id="k-1")
    file = registration_file(r, launch)
    k, kind, requests = kernel_registers(file.expose())
    assert kind == socket
    assert len(requests) == 1
    # A ROUTER prepends the peer's identity.
    r.received(NOW + 1000, [b"peer"] + requests[0])
    outputs = drain(r)
    registered = [o[2] for o in outputs if o[0] == "event" and o[2].kind == "registered"]
    assert len(registered) == 1 and registered[0].evidence == "request"
    info = registered[0].connection.to_dict()
    assert info["shell_port"] == 40001 and info["hb_port"] == 40005
    assert info["key"] == KEY.encode()
    assert r.launch_state(launch) == "connected"
    replies = [o[1] for o in outputs if o[0] == "transmit"]
    assert replies[0][0] == b"peer"
    k.received(NOW + 2000, replies[0][1:])
    events = [o[2] for o in drain(k) if o[0] == "event"]
    assert [e.kind for e in events][-1] == "connected"
    assert k.state == "connected"


def test_stock_ipykernel_rewriting_the_file_registers():
    r = bound_registrar()
    launch = r.launch(NOW, KEY, "posit")
    registration_file(r, launch)
    rewritten = (
        '{"shell_port": 1001, "iopub_port": 1002, "stdin_port": 1003, "control_port": 1004,'
        f' "hb_port": 1005, "ip": "127.0.0.1", "key": "{KEY}", "transport": "tcp",'
        ' "signature_scheme": "hmac-sha256", "kernel_name": ""}'
    ).encode()
    r.file_changed(NOW, launch, rewritten[:40])  # half-written: not yet
    assert r.launch_state(launch) == "bound"
    r.file_changed(NOW, launch, rewritten)
    events = [o[2] for o in drain(r) if o[0] == "event"]
    assert any(e.kind == "rejected" for e in events)
    registered = [e for e in events if e.kind == "registered"]
    assert registered[0].evidence == "file_rewrite"
    assert registered[0].connection.ports["control_port"] == 1004


def test_hostile_frames_are_events_not_exceptions():
    r = bound_registrar()
    launch = r.launch(NOW, KEY, "posit")
    file = registration_file(r, launch)
    _, _, requests = kernel_registers(file.expose())
    forged = list(requests[0])
    assert forged[0] == b"<IDS|MSG>"
    forged[1] = b"0" * 64  # a signature no key makes
    for frames in ([b"peer", b"garbage"], [b"peer"] + forged, [b"x" * 100_000], []):
        r.received(NOW, frames)
    events = [o for o in drain(r) if o[0] == "event"]
    assert events and all(e[2].kind == "rejected" and e[1] is None for e in events)
    assert r.launch_state(launch) == "bound"


def test_an_exited_kernel_fails_its_launch_with_its_status():
    r = bound_registrar()
    launch = r.launch(NOW, KEY, "posit")
    r.kernel_exited(NOW, launch, code=3)
    # The exit takes effect at the end of its instant: the deadline comes out one µs later,
    # so a file rewrite seen in the same wake-up still counts.
    outputs = drain(r)
    assert ("timeout", NOW + 1) in outputs
    assert r.launch_state(launch) == "bound"
    r.timeout(NOW + 1)
    failed = [o[2] for o in drain(r) if o[0] == "event" and o[2].kind == "failed"]
    assert failed[0].exit_code == 3
    assert "exit status 3" in failed[0].message


def test_the_deadline_comes_out_and_fails_the_launch():
    r = bound_registrar()
    launch = r.launch(NOW, KEY, "posit", timeout=2.5)
    assert drain(r)[-1] == ("timeout", NOW + 2_500_000)
    r.timeout(NOW + 2_500_000)
    failed = [o[2] for o in drain(r) if o[0] == "event" and o[2].kind == "failed"]
    assert "timed out" in failed[0].message
    r.rearm(NOW + 3_000_000, launch)
    assert r.launch_state(launch) == "bound"
    assert r.remove(launch) is None
    assert r.launch_state(launch) is None
    with pytest.raises(jh.UsageError, match="no launch"):
        r.rearm(NOW, launch)


def test_driver_mistakes_raise_with_the_cores_message():
    r = jh.Registrar()
    with pytest.raises(jh.UsageError, match="not bound"):
        r.launch(NOW, KEY, "posit")
    r.registration_bound(NOW, 5555)
    with pytest.raises(jh.UsageError, match="RegistrationBound"):
        r.registration_bound(NOW, 5556)
    r.launch(NOW, KEY, "posit")
    with pytest.raises(jh.UsageError, match="already uses this key"):
        r.launch(NOW, KEY, "upstream", kernel_id="k")
    with pytest.raises(jh.UsageError, match="non-empty key"):
        r.launch(NOW, "", "posit")
    with pytest.raises(ValueError, match="dialect"):
        r.launch(NOW, "other", "klingon")
    with pytest.raises(jh.FileError, match="invalid connection file"):
        jh.Kernel(b"{not json", session_id="k")
    assert issubclass(jh.UsageError, jh.HandshakeError)


def test_no_repr_shows_the_key():
    r = bound_registrar()
    launch = r.launch(NOW, KEY, "posit")
    file = registration_file(r, launch)
    assert KEY.encode() in file.expose()
    k, _, requests = kernel_registers(file.expose())
    r.received(NOW, [b"peer"] + requests[0])
    everything = [repr(o) for o in drain(r)] + [repr(file), repr(k), repr(r)]
    everything.append(repr(r.connection(launch)))
    assert all(KEY not in text for text in everything), everything


@pytest.mark.parametrize(
    "version,mode",
    [("5.6", "upstream"), ("5.10", "upstream"), ("5.5", "handshake"), ("5.4", "classic"),
     (None, "classic"), ("garbage", "classic")],
)
def test_the_kernelspec_mode_rule(version, mode):
    assert jh.launch_mode(version) == mode
