"""Real kernels, real processes: kernelspecs in a private JUPYTER_PATH, a private runtime dir."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
PROVISIONER = "jupyter-handshake-provisioner"


def rust_kernel_binary() -> str:
    """The workspace's kernel (`jupyter-handshake kernel`), built if it is not there yet."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "debug" / "jupyter-handshake"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "-j2", "-p", "jupyter-handshake-cli", "--bin", "jupyter-handshake"],
            cwd=REPO, check=True)
    return str(binary)


def spec(argv, *, protocol=None, provisioner=True, config=None, language="python"):
    kernel = {"argv": argv, "display_name": argv[0], "language": language}
    if protocol:
        kernel["kernel_protocol_version"] = protocol
    if provisioner:
        kernel["metadata"] = {"kernel_provisioner": {
            "provisioner_name": PROVISIONER, "config": config or {}}}
    return kernel


IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
XPYTHON = [sys.executable, "-m", "xpython_launcher", "-f", "{connection_file}"]


@pytest.fixture(scope="session")
def jupyter_env(tmp_path_factory):
    """Writes the test kernelspecs and points jupyter at them; returns the runtime dir."""
    root = tmp_path_factory.mktemp("jupyter")
    specs = {
        # Stock ipykernel says 5.5 and rewrites the file: the handshake mode by the rule.
        "hs-ipykernel": spec(IPYKERNEL, protocol="5.5"),
        "local-ipykernel": spec(IPYKERNEL, protocol="5.5", provisioner=False),
        # xeus-python's own kernelspec declares no version; the config selects upstream.
        "hs-xpython": spec(XPYTHON, config={"mode": "upstream"}),
        "hs-rust": spec([rust_kernel_binary(), "kernel", "-f", "{connection_file}"],
                        protocol="5.5", language="text"),
        "hs-rust-upstream": spec([rust_kernel_binary(), "kernel", "-f", "{connection_file}"],
                                 protocol="5.6", language="text"),
        "hs-dies": spec([sys.executable, "-c", "import sys; sys.exit(7)", "{connection_file}"],
                        protocol="5.5"),
    }
    for name, kernel in specs.items():
        d = root / "kernels" / name
        d.mkdir(parents=True)
        (d / "kernel.json").write_text(json.dumps(kernel))
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    return runtime


@pytest.fixture
def runtime_dir(jupyter_env):
    yield jupyter_env
    # Nothing with a key is left behind by a finished test.
    leftovers = [p.name for p in jupyter_env.iterdir()]
    assert leftovers == [], leftovers
