"""``jupyter-handshake-provisioner``: race-free kernel launches for every jupyter_client
frontend (JupyterLab, Notebook, nbclient, papermill, voila, ...).

A subclass of jupyter_client's ``LocalProvisioner``: interrupts, signals, shutdown, restarts
and polling are LocalProvisioner's own (the kernel is spawned by jupyter_client's
``launch_kernel``, so process groups and signals are the same). What changes is how the
kernel learns and reports its ports:

* **handshake** (kernelspec ``kernel_protocol_version`` 5.5, e.g. stock ipykernel and ark): a
  Posit-dialect registration file is written in place of the connection file; ark registers
  with a signed ``handshake_request``, stock ipykernel binds its own ports and rewrites the
  file with them. Either is registration evidence for the core.
* **upstream** (>= 5.6, e.g. xeus-python with its kernelspec saying so): an upstream-dialect
  registration file; the kernel registers from a DEALER.
* **classic** (anything else): exactly LocalProvisioner, with a warning that the launch is
  racy.

``metadata.kernel_provisioner.config.mode`` (``handshake``, ``upstream``, ``classic``)
overrides the rule. Every launch of the process goes through one registration socket
(:class:`~jupyter_handshake.driver.SharedRegistrar`), each with its own key.

``launch_kernel`` returns only once the kernel has registered; a kernel that exits first fails
the launch at once with its exit status (:class:`~jupyter_handshake.driver.LaunchFailed`).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional

from jupyter_client.connect import port_names
from jupyter_client.launcher import launch_kernel
from jupyter_client.localinterfaces import is_local_ip, local_ips
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Float, Unicode

from ._core import launch_mode, mode_dialect
from .driver import Launch, LaunchFailed, SharedRegistrar, remove_file

MODES = ("handshake", "upstream", "classic")


class HandshakeProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches local kernels through the JEP 66 handshake (see the module docs)."""

    mode = Unicode(
        "", config=True,
        help="handshake, upstream or classic; empty: from the kernelspec's "
             "kernel_protocol_version (5.5 handshake, >= 5.6 upstream, else classic).")
    registration_timeout = Float(
        30.0, config=True,
        help="Seconds to wait for the kernel to register (its start-up time included).")

    _launch: Optional[Launch] = None
    _resolved_mode: Optional[str] = None

    @property
    def launch_mode(self) -> str:
        """The mode of this provisioner's kernel (decided once, at the first launch)."""
        if self._resolved_mode is None:
            if self.mode:
                if self.mode not in MODES:
                    raise ValueError(
                        f"kernel_provisioner config mode must be one of {', '.join(MODES)}")
                self._resolved_mode = self.mode
            else:
                version = self.kernel_spec.kernel_protocol_version or None
                self._resolved_mode = launch_mode(version)
            if self._resolved_mode == "classic":
                self.log.warning(
                    "kernel %s: classic launch (kernelspec kernel_protocol_version %r): the "
                    "kernel binds ports chosen before it started, which another process can take "
                    "first; set metadata.kernel_provisioner.config.mode to handshake or upstream "
                    "if the kernel registers", self.kernel_id,
                    self.kernel_spec.kernel_protocol_version)
        return self._resolved_mode

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        mode = self.launch_mode
        km = self.parent
        if mode != "classic" and km is not None and km.transport != "tcp":
            self.log.warning("kernel %s: transport %s: classic launch (the handshake is tcp only)",
                             self.kernel_id, km.transport)
        if mode == "classic" or km is None or km.transport != "tcp":
            return await super().pre_launch(**kwargs)
        if not is_local_ip(km.ip):
            raise RuntimeError(
                f"Can only launch a kernel on a local interface. This one is not: {km.ip}. "
                f"Currently valid addresses are: {local_ips()}")
        encryption = kwargs.pop("transport_encryption", None)
        if km._transport_encryption_policy(encryption) == "required":
            # The registration file carries no CurveZMQ keys.
            raise RuntimeError(
                "transport_encryption='required' is not available with handshake launches; "
                "set metadata.kernel_provisioner.config.mode to classic for this kernel")
        extra_arguments = kwargs.pop("extra_arguments", [])
        if not km.connection_file:
            # nbclient's manager has no path yet (jupyter_server chooses runtime/kernel-<id>.json).
            km.connection_file = os.path.join(jupyter_runtime_dir(), f"kernel-{self.kernel_id}.json")
        if self._launch is None:
            registrar = SharedRegistrar.for_running_loop(km.ip)
            self._launch = registrar.launch(
                km.connection_file, mode_dialect(mode), kernel_id=self.kernel_id,
                timeout=self.registration_timeout)
            self.log.info("kernel %s: %s launch through the registration socket on port %s",
                          self.kernel_id, mode, registrar.port)
        else:
            self._launch.rearm()  # a restart: same socket, same key, a new file
        kernel_cmd = km.format_kernel_cmd(extra_arguments=extra_arguments)
        return await KernelProvisionerBase.pre_launch(self, cmd=kernel_cmd, **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        if self._launch is None:
            return await super().launch_kernel(cmd, **kwargs)
        try:
            self.process = launch_kernel(cmd, **LocalProvisioner._scrub_kwargs(kwargs))
        except Exception:
            self._launch.close(remove=True)  # nothing to wait for; a retry starts afresh
            self._launch = None
            raise
        self.pid = self.process.pid
        try:
            self.pgid = os.getpgid(self.pid)
        except OSError:
            self.pgid = None
        self.cwd = kwargs.get("cwd", pathlib.Path.cwd())
        process = self.process
        try:
            connection = await self._launch.registered(process.poll)
        except LaunchFailed as failure:
            await self._reap(process)
            remove_file(self._launch.path)  # the key leaves with the kernel
            raise LaunchFailed(
                f"kernel {self.kernel_id} did not register: {failure}",
                failure.exit_code, failure.exit_signal) from None
        info = connection.to_dict()
        if self.kernel_spec.name:
            info.setdefault("kernel_name", self.kernel_spec.name)
        self._hand_to_manager(info)
        self.connection_info = info
        return info

    def _hand_to_manager(self, info: dict[str, Any]) -> None:
        """Gives the manager the registered ports and key, so that its own connection info
        matches the file the kernel may have rewritten (else jupyter_client refuses the launch:
        "connection information already exists and does not match")."""
        km = self.parent
        km.transport = info["transport"]
        km.ip = info["ip"]
        for name in port_names:
            setattr(km, name, info[name])
        km.session.signature_scheme = info["signature_scheme"]
        km.session.key = info["key"]

    async def _reap(self, process) -> None:
        """A failed launch leaves no process behind."""
        if process.poll() is None:
            try:
                await self.kill()
            except (OSError, ValueError):
                pass
        await self.wait()

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if not restart and self._launch is not None:
            self._launch.close(remove=True)
            self._launch = None
