"""`python -m jupyter_handshake enable|disable`, then a launch through the kernelspec it wrote
(with jupyter_client's blocking KernelManager: the provisioner also runs under run_sync)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import IPYKERNEL, spec


@pytest.fixture
def env(tmp_path):
    """A kernelspec installed where pip installs them (sys.prefix), removed afterwards; a
    private user data dir that, as by default outside virtualenvs, comes before it."""
    name = f"jh-test-{uuid.uuid4().hex[:12]}"
    base = pathlib.Path(sys.prefix, "share", "jupyter", "kernels", name)
    base.mkdir(parents=True)
    try:
        (base / "kernel.json").write_text(json.dumps(spec(IPYKERNEL, protocol="5.5",
                                                          provisioner=False)))
        (base / "logo-32x32.png").write_bytes(b"not really a png")
        env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PATH"}
        env.update(JUPYTER_DATA_DIR=str(tmp_path / "user"), JUPYTER_PREFER_ENV_PATH="0",
                   JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
        yield env, tmp_path, name, base
    finally:
        shutil.rmtree(base)


def run(env, *args):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          check=True)


def provisioner_of(path):
    return json.loads(path.read_text()).get("metadata", {}).get("kernel_provisioner")


LAUNCH = """
import sys
from jupyter_client import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
print(type(km.provisioner).__name__, kc.execute_interactive("x = 1", timeout=30)["content"]["status"])
kc.stop_channels(); km.shutdown_kernel()
"""


def test_enable_a_user_copy_launch_through_it_then_disable(env):
    env, tmp, name, base = env
    original = base / "kernel.json"
    copy = tmp / "user" / "kernels" / name / "kernel.json"
    out = run(env, "-m", "jupyter_handshake", "enable", name, "--user").stdout
    assert f"a copy: {copy}" in out and "mode handshake" in out
    assert provisioner_of(copy)["provisioner_name"] == "jupyter-handshake-provisioner"
    assert provisioner_of(original) is None
    assert (copy.parent / "logo-32x32.png").exists()
    # The user's copy is the one jupyter finds.
    listed = json.loads(run(env, "-m", "jupyter", "kernelspec", "list", "--json").stdout)
    assert listed["kernelspecs"][name]["resource_dir"] == str(copy.parent)

    assert run(env, "-c", LAUNCH, name).stdout.split() == ["HandshakeProvisioner", "ok"]
    assert os.listdir(tmp / "runtime") == []

    out = run(env, "-m", "jupyter_handshake", "disable", name, "--user").stdout
    assert f"disabled jupyter-handshake-provisioner in {copy}" in out
    assert provisioner_of(copy) is None
    assert run(env, "-c", LAUNCH, name).stdout.split() == ["LocalProvisioner", "ok"]


def test_enable_in_place_with_a_mode(env):
    env, tmp, name, base = env
    original = base / "kernel.json"
    out = run(env, "-m", "jupyter_handshake", "enable", name, "--mode", "upstream").stdout
    assert f"the original: {original}" in out and "mode upstream" in out
    assert provisioner_of(original)["config"] == {"mode": "upstream"}
    out = run(env, "-m", "jupyter_handshake", "disable", name).stdout
    assert "disabled" in out and provisioner_of(original) is None
    failed = subprocess.run([sys.executable, "-m", "jupyter_handshake", "enable", "nope"],
                            env=env, capture_output=True, text=True)
    assert failed.returncode == 1 and "no kernelspec named 'nope'" in failed.stderr
