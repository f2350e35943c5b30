"""``python -m jupyter_handshake enable|disable KERNELSPEC [--user | --sys-prefix] [--mode M]``

``enable`` selects ``jupyter-handshake-provisioner`` for an installed kernelspec by writing
``metadata.kernel_provisioner`` into its ``kernel.json``: into the original where it is found,
or, with ``--user`` / ``--sys-prefix``, into a copy of the whole kernelspec directory in the
user's or the environment's Jupyter data dir (the user's copy takes precedence over the
original). ``disable`` removes that metadata again (only if it names this provisioner). Both
say which file they wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_data_dir

from ._core import launch_mode

PROVISIONER = "jupyter-handshake-provisioner"
MODES = ("handshake", "upstream", "classic")


def target_dir(name: str, source: str, where: str | None) -> str:
    if where == "user":
        return os.path.join(jupyter_data_dir(), "kernels", name)
    if where == "sys-prefix":
        return os.path.join(sys.prefix, "share", "jupyter", "kernels", name)
    return source


def write_json(path: str, value: dict) -> None:
    """Atomically replaces ``path`` (temp file + rename); kernelspecs are world-readable."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kernel-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_handshake",
        description="Turn the race-free jupyter-handshake provisioner on or off for a kernelspec.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("enable", "disable"):
        p = sub.add_parser(command)
        p.add_argument("kernelspec", help="kernelspec name, as in `jupyter kernelspec list`")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--user", dest="where", action="store_const", const="user",
                           help="write a copy into the user's Jupyter data dir")
        where.add_argument("--sys-prefix", dest="where", action="store_const",
                           const="sys-prefix", help="write a copy into sys.prefix")
        if command == "enable":
            p.add_argument("--mode", choices=MODES,
                           help="override the kernelspec rule (kernel_protocol_version: 5.5 "
                                "handshake, >= 5.6 upstream, else classic)")
    args = parser.parse_args(argv)

    try:
        source = KernelSpecManager().get_kernel_spec(args.kernelspec).resource_dir
    except NoSuchKernel:
        print(f"no kernelspec named {args.kernelspec!r} (see `jupyter kernelspec list`)",
              file=sys.stderr)
        return 1
    target = target_dir(args.kernelspec, source, args.where)
    if os.path.abspath(target) != os.path.abspath(source):
        if args.command == "disable" and not os.path.exists(target):
            print(f"nothing to disable: {target} does not exist", file=sys.stderr)
            return 1
        if not os.path.exists(target):
            shutil.copytree(source, target)
    path = os.path.join(target, "kernel.json")
    with open(path) as f:
        spec = json.load(f)
    metadata = spec.setdefault("metadata", {})

    if args.command == "disable":
        current = metadata.get("kernel_provisioner", {})
        if current.get("provisioner_name") != PROVISIONER:
            print(f"{path}: {PROVISIONER} is not enabled there; nothing changed")
            return 0
        del metadata["kernel_provisioner"]
        write_json(path, spec)
        print(f"disabled {PROVISIONER} in {path}")
        return 0

    config = {"mode": args.mode} if args.mode else {}
    metadata["kernel_provisioner"] = {"provisioner_name": PROVISIONER, "config": config}
    write_json(path, spec)
    mode = args.mode or launch_mode(spec.get("kernel_protocol_version"))
    copy = "a copy" if target != source else "the original"
    print(f"enabled {PROVISIONER} in {copy}: {path} (mode {mode})")
    if mode == "classic":
        print("warning: this kernelspec declares no kernel_protocol_version >= 5.5, so launches "
              "stay classic (racy); pass --mode handshake or --mode upstream if the kernel "
              "registers", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
