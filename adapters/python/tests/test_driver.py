"""The driver without jupyter_client, as README shows it: a launch on the shared socket, the
kernel spawned with asyncio's subprocess, its connection info once it registered."""

import asyncio
import os

import pytest

from conftest import rust_kernel_binary
from jupyter_handshake.driver import LaunchFailed, SharedRegistrar


@pytest.mark.parametrize("dialect", ["posit", "upstream"])
async def test_launch_outside_jupyter_client(runtime_dir, dialect):
    registrar = SharedRegistrar.for_running_loop()
    path = str(runtime_dir / f"kernel-{dialect}.json")
    launch = registrar.launch(path, dialect=dialect, kernel_id="readme-kernel")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    process = await asyncio.create_subprocess_exec(rust_kernel_binary(), "kernel", "-f", path)
    try:
        connection = await launch.registered(lambda: process.returncode)
        info = connection.to_dict()
        assert all(info[f"{c}_port"] > 0 for c in ("shell", "iopub", "stdin", "control", "hb"))
        assert "key=<redacted>" in repr(connection)
        assert launch.state == "connected"
    finally:
        process.kill()
        await process.wait()
        launch.close()
    assert not os.path.exists(path)


async def test_a_kernel_that_never_registers_times_out(runtime_dir):
    registrar = SharedRegistrar.for_running_loop()
    path = str(runtime_dir / "kernel-silent.json")
    launch = registrar.launch(path, dialect="posit", timeout=0.3)
    process = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        with pytest.raises(LaunchFailed, match="timed out") as failure:
            await launch.registered(lambda: process.returncode)
        assert failure.value.exit_code is None
    finally:
        process.kill()
        await process.wait()
        launch.close()
