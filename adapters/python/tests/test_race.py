"""The port race, shown in one test: 32 kernels at once next to a thief that binds every port
named in any new file in the runtime dir. LocalProvisioner's launches fail; ours do not."""

import asyncio
import uuid

from jupyter_client import AsyncKernelManager

from thief import Thief

KERNELS = 32


async def launch_and_ready(runtime_dir, kernel_name):
    """The kernel's manager and client, and whether it came up and answered kernel_info (False:
    the launch failed). Shut it down with :func:`shut_down`."""
    # Where jupyter_server puts connection files, for both provisioners.
    path = runtime_dir / f"kernel-{uuid.uuid4()}.json"
    km = AsyncKernelManager(kernel_name=kernel_name, connection_file=str(path))
    kc = None
    try:
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        return km, kc, True
    except Exception as e:  # a lost race shows up as any of jupyter_client's launch errors
        print(f"{kernel_name}: {type(e).__name__}: {e}")
        return km, kc, False


async def shut_down(km, kc):
    if kc is not None:
        kc.stop_channels()
    if km.has_kernel:
        await km.shutdown_kernel(now=True)
    else:
        await km.cleanup_resources()


async def failures(runtime_dir, kernel_name):
    """Launches KERNELS kernels at once next to the thief; the thief stops before any of them
    is shut down (a port freed by a kernel that is gone is no stolen port)."""
    results = []
    try:
        with Thief(runtime_dir) as thief:
            results = await asyncio.gather(
                *(launch_and_ready(runtime_dir, kernel_name) for _ in range(KERNELS)))
    finally:
        await asyncio.gather(*(shut_down(km, kc) for km, kc, _ in results))
    return [ok for _, _, ok in results].count(False), thief


async def test_32_kernels_next_to_a_port_thief(runtime_dir, capsys):
    local_failed, local_thief = await failures(runtime_dir, "local-ipykernel")
    ours_failed, ours_thief = await failures(runtime_dir, "hs-ipykernel")
    with capsys.disabled():
        print(f"\nrace, {KERNELS} kernels each: LocalProvisioner {local_failed} failed "
              f"(thief took {local_thief.stolen} ports), jupyter-handshake-provisioner "
              f"{ours_failed} failed (thief took {ours_thief.stolen} of "
              f"{ours_thief.attempts} tried)")
    assert local_failed > 0
    assert ours_failed == 0
    assert ours_thief.stolen == 0 and ours_thief.attempts > 0
