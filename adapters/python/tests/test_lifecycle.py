"""Each kernel through AsyncKernelManager and the provisioner: ready, execute, restart,
execute, shutdown."""

import os
import queue
import stat

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_handshake.driver import SharedRegistrar
from jupyter_handshake.provisioner import HandshakeProvisioner


async def execute(km, code):
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        reply = await kc.execute_interactive(code, timeout=30)
        return reply["content"]["status"]
    finally:
        kc.stop_channels()


@pytest.mark.parametrize("kernel,mode", [
    ("hs-ipykernel", "handshake"),
    ("hs-xpython", "upstream"),
    ("hs-rust", "handshake"),
    ("hs-rust-upstream", "upstream"),
])
async def test_ready_execute_restart_execute_shutdown(runtime_dir, kernel, mode):
    km = AsyncKernelManager(kernel_name=kernel)
    await km.start_kernel()
    try:
        assert isinstance(km.provisioner, HandshakeProvisioner)
        assert km.provisioner.launch_mode == mode
        # The file the kernel was given is owner-only.
        assert stat.S_IMODE(os.stat(km.connection_file).st_mode) == 0o600
        assert await execute(km, "print(6 * 7)") == "ok"
        before = km.get_connection_info()
        registrar = SharedRegistrar.for_running_loop()
        await km.restart_kernel()
        # The restarted kernel registered again through the same socket, with the same key.
        assert SharedRegistrar.for_running_loop() is registrar
        after = km.get_connection_info()
        assert after["key"] == before["key"]
        assert await execute(km, "print(7 * 7)") == "ok"
        assert await km.is_alive()
    finally:
        await km.shutdown_kernel()
    assert not await km.is_alive()
    assert not os.path.exists(km.connection_file)


async def test_interrupt_as_with_local_provisioner(runtime_dir):
    km = AsyncKernelManager(kernel_name="hs-ipykernel")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        # Returns once IOPub delivered this execution's idle: the subscription is live.
        await kc.execute_interactive("import time", timeout=30)
        msg_id = kc.execute("print('sleeping', flush=True); time.sleep(60)")
        # Interrupt only once the code runs ("busy" comes before ipykernel arms its SIGINT
        # handler; a signal in between is ignored, with any provisioner).
        msg = await kc.get_iopub_msg(timeout=30)
        while msg["msg_type"] != "stream" or "sleeping" not in msg["content"]["text"]:
            msg = await kc.get_iopub_msg(timeout=30)
        # The signal goes out through LocalProvisioner's own send_signal (process group). Under
        # heavy load ipykernel now and then misses one (with LocalProvisioner too), so a user
        # would press interrupt again: up to three times.
        for attempt in range(3):
            await km.interrupt_kernel()
            try:
                reply = await kc.get_shell_msg(timeout=10)
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no execute_reply after three interrupts")
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()


async def test_a_kernel_that_cannot_be_spawned_leaves_nothing(runtime_dir, tmp_path):
    km = AsyncKernelManager(kernel_name="hs-ipykernel")
    km.kernel_spec.argv = [str(tmp_path / "no-such-kernel"), "-f", "{connection_file}"]
    with pytest.raises(FileNotFoundError):
        await km.start_kernel()
    assert km.provisioner.launch_mode == "handshake"
    assert SharedRegistrar.for_running_loop().core.pending == 0
