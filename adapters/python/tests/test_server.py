"""A real `jupyter server` process: start a kernel through REST, execute over its websocket,
restart through REST, execute again, delete.

What a client sees across a restart: a handshake restart gives the kernel new ports (the old
ones were released when the old process died; reusing them would bring the race back), and
jupyter_server connects a websocket's ZeroMQ channels once, when the websocket opens. So the
websocket that was open during the restart gets no reply to a request sent after it (it stays
open; the server never moves it); a websocket opened after the restart works. JupyterLab and
Notebook reconnect their websocket after every restart, so they see no difference.
"""

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import uuid

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

TOKEN = secrets.token_hex(16)


@pytest.fixture
async def server(jupyter_env, tmp_path):
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={tmp_path}",
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    url = None
    while url is None:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, "jupyter server exited before serving"
        m = re.search(rb"http://127\.0\.0\.1:(\d+)/", line)
        if m:
            url = f"127.0.0.1:{int(m.group(1))}"
    logs = []

    async def read_log():  # also keeps the pipe from filling up
        async for line in proc.stderr:
            logs.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_log())
    try:
        # jupyter_server prints its URL (a port it found by binding port 0 and closing) before
        # it listens on it: wait until it does.
        for _ in range(600):
            try:
                await rest(url, "GET", "/api/status")
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.1)
        yield url, tmp_path / "runtime", logs
    finally:
        proc.terminate()
        await proc.wait()
        await reader
        print("".join(logs[-60:]))  # shown by pytest when the test failed


async def rest(url, method, path, body=None):
    request = HTTPRequest(f"http://{url}{path}", method=method,
                          headers={"Authorization": f"token {TOKEN}"},
                          body=None if body is None else json.dumps(body),
                          allow_nonstandard_methods=True, request_timeout=120)
    response = await AsyncHTTPClient().fetch(request, raise_error=True)
    return response.code, json.loads(response.body) if response.body else None


async def websocket(url, kernel_id):
    return await websocket_connect(HTTPRequest(
        f"ws://{url}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4()}",
        headers={"Authorization": f"token {TOKEN}"}))


async def execute(ws, code, wait):
    """Sends an execute_request; returns the reply's status, or None if none came in `wait`."""
    msg_id = uuid.uuid4().hex
    await ws.write_message(json.dumps({
        "channel": "shell",
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": "test",
                   "username": "test", "version": "5.3"},
        "parent_header": {}, "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False},
    }))

    async def reply():
        while True:
            raw = await ws.read_message()
            assert raw is not None, "websocket closed"
            msg = json.loads(raw)
            if (msg.get("msg_type") == "execute_reply"
                    and msg["parent_header"].get("msg_id") == msg_id):
                return msg["content"]["status"]

    try:
        return await asyncio.wait_for(reply(), wait)
    except asyncio.TimeoutError:
        return None


async def test_rest_websocket_restart_delete(server):
    url, runtime, logs = server
    code, kernel = await rest(url, "POST", "/api/kernels", {"name": "hs-ipykernel"})
    assert code == 201
    kernel_id = kernel["id"]
    # What README tells users to look for in the server's log.
    assert any(f"kernel {kernel_id}: handshake launch through the registration socket" in line
               for line in logs), logs
    ws = await websocket(url, kernel_id)
    assert await execute(ws, "6 * 7", wait=60) == "ok"

    code, _ = await rest(url, "POST", f"/api/kernels/{kernel_id}/restart")
    assert code == 200
    # The websocket opened before the restart still talks to the old ports: no reply.
    assert await execute(ws, "7 * 7", wait=5) is None
    ws.close()
    fresh = await websocket(url, kernel_id)
    assert await execute(fresh, "7 * 7", wait=60) == "ok"
    fresh.close()

    code, _ = await rest(url, "DELETE", f"/api/kernels/{kernel_id}")
    assert code == 204
    assert not (runtime / f"kernel-{kernel_id}.json").exists()
