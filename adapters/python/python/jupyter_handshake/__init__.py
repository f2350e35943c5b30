"""Race-free Jupyter kernel launches: the jupyter-handshake core (JEP 66) for Python.

* :class:`Registrar` and :class:`Kernel` are the core's sans-IO machines (Rust, via PyO3):
  bytes and the time in, actions, frames, events and the next deadline out. Every protocol
  decision is theirs.
* :mod:`jupyter_handshake.driver` moves bytes, time, files and processes between asyncio
  (pyzmq's ``zmq.asyncio``) and a :class:`Registrar`.
* :mod:`jupyter_handshake.provisioner` is the jupyter_client kernel provisioner
  ``jupyter-handshake-provisioner`` built on that driver.
"""

from ._core import (
    Connection,
    Event,
    FileError,
    HandshakeError,
    Kernel,
    Registrar,
    Secret,
    UsageError,
    launch_mode,
    mode_dialect,
)

__all__ = [
    "Connection",
    "Event",
    "FileError",
    "HandshakeError",
    "Kernel",
    "Registrar",
    "Secret",
    "UsageError",
    "launch_mode",
    "mode_dialect",
]
