"""The asyncio driver: moves bytes, time, files and processes between the OS and the core.

One :class:`SharedRegistrar` per event loop owns one registration ROUTER (pyzmq's
``zmq.asyncio``) and the core's :class:`~jupyter_handshake.Registrar`; every kernel the process
starts registers through it, each launch with its own random key. The driver only

* binds the socket the core asks for and tells it the port;
* receives every message and hands the frames to the core, sends every frame the core emits;
* writes every file the core asks for (atomically, mode 0600) and reports changes of a pending
  launch's file (that is how stock ipykernel registers: it rewrites the file with its ports);
* watches the kernel process and reports its exit at once;
* wakes at the core's deadline.

Whether a message is valid, a file is a registration, or time is up is the core's decision,
which comes back as events; :meth:`Launch.registered` returns the connection the core accepted
or raises :class:`LaunchFailed` with the core's reason.

For a launch outside jupyter_client::

    registrar = SharedRegistrar.for_running_loop()
    launch = registrar.launch(path, dialect="posit")   # writes the registration file
    process = await asyncio.create_subprocess_exec(*argv_with(path))
    connection = await launch.registered(lambda: process.returncode)
    info = connection.to_dict()                         # jupyter_client connection info
    ...
    launch.close()                                      # forget it, remove the file
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
import time
import weakref
from typing import Callable, Optional

import zmq
import zmq.asyncio

from ._core import REGISTRATION_MAX_FRAME, Connection, Registrar

log = logging.getLogger("jupyter_handshake")

#: How often a pending launch's file and process are looked at (seconds).
WATCH_INTERVAL = 0.005

# Anyone on the host can connect to the registration socket. These bound what a flood of
# forged messages costs (README, "Security"; the Rust drivers use the same values):

#: The largest frame the ROUTER accepts (``ZMQ_MAXMSGSIZE``): the core's registration limit,
#: 2 KiB (a real request's largest frame, its header, is a few hundred bytes). libzmq
#: disconnects a peer that sends more before anything of it is kept.
MAX_FRAME = REGISTRATION_MAX_FRAME

#: Complete messages libzmq queues per peer (``ZMQ_RCVHWM``). A kernel sends one request;
#: libzmq's default, 1000, lets a few hundred flooding connections park gigabytes here. Past
#: it libzmq stops reading that connection, and the backlog waits in the sender's buffers.
RCVHWM = 4

#: The listen backlog (``ZMQ_BACKLOG``; libzmq's default is 100, Linux caps it at
#: ``net.core.somaxconn``). Connections past the backlog have their SYNs dropped and connect a
#: second later: a fleet's kernels arriving next to a few hundred hostile connections.
BACKLOG = 4096

#: Messages of one peer (routing id) the core may reject before that peer is no longer heard:
#: its further messages are dropped unverified. A kernel sends one request per connection.
STRIKES = 4

#: Peers whose strikes are remembered, oldest forgotten first.
STRANGERS = 4096

#: Messages taken from the socket (dropped ones included) before the receiver yields to the
#: event loop: pyzmq hands over a queued message without suspending, so without this a flood
#: would keep the loop from the deadlines, files and processes it also watches.
BATCH = 64


class LaunchFailed(RuntimeError):
    """A kernel did not register; the message is the core's reason. ``exit_code`` /
    ``exit_signal`` are set when the kernel exited before registering."""

    def __init__(self, message: str, exit_code: Optional[int] = None,
                 exit_signal: Optional[int] = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.exit_signal = exit_signal


class Clock:
    """The core's timeline: the wall clock read once, advanced by the monotonic clock."""

    def __init__(self) -> None:
        self._origin_us = time.time_ns() // 1000
        self._mono0 = time.monotonic_ns()

    def now_us(self) -> int:
        return self._origin_us + (time.monotonic_ns() - self._mono0) // 1000


def write_private(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temp file in the same directory, then rename),
    readable by the owner only."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)  # no fsync: a runtime file need not survive a power cut
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_file(path: Optional[str]) -> None:
    """Removes ``path`` if it exists."""
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def returncode_status(code: Optional[int]) -> tuple[Optional[int], Optional[int]]:
    """A ``Popen.returncode`` as (exit code, signal)."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    return code, None


class Launch:
    """One kernel's launch on the shared socket. Restarts re-arm it (same key, same file)."""

    def __init__(self, registrar: "SharedRegistrar", launch_id: int, path: str):
        self._registrar = registrar
        self.id = launch_id
        self.path = path
        self._outcome: asyncio.Future = registrar.loop.create_future()
        self._written: Optional[bytes] = None

    def __repr__(self) -> str:
        return f"<Launch {self.id} {self._registrar.core.launch_state(self.id)} {self.path}>"

    @property
    def state(self) -> Optional[str]:
        """``bound`` (waiting), ``connected``, ``failed``; None once closed."""
        return self._registrar.core.launch_state(self.id)

    async def registered(self, returncode: Callable[[], Optional[int]]) -> Connection:
        """Waits for the core's outcome, watching the file and the process meanwhile
        (``returncode()``: None while it runs, then its exit code, negative for a signal)."""
        registrar = self._registrar
        last = self._written
        seen = None  # (inode, size, mtime) of the bytes last read
        while not self._outcome.done():
            code = returncode()
            if code is not None:
                exit_code, exit_signal = returncode_status(code)
                registrar.feed(registrar.core.kernel_exited, self.id, exit_code, exit_signal)
                break
            try:
                st = os.stat(self.path)
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = None
            if stamp is not None and stamp != seen:
                seen = stamp
                try:
                    with open(self.path, "rb") as f:
                        data = f.read(MAX_FRAME)
                except OSError:
                    data = None
                if data is not None and data != last:
                    last = data
                    registrar.feed(registrar.core.file_changed, self.id, data)
                    if self._outcome.done():
                        break
            await asyncio.wait((self._outcome,), timeout=WATCH_INTERVAL)
        return await self._outcome

    def rearm(self) -> None:
        """Starts over for a restarted kernel: the file is written again, a fresh deadline."""
        if not self._outcome.done():
            self._outcome.cancel()
        self._outcome = self._registrar.loop.create_future()
        self._registrar.feed(self._registrar.core.rearm, self.id)

    def close(self, remove: bool = True) -> None:
        """Forgets the launch (aborting it if pending) and removes its file."""
        self._registrar.forget(self)
        if remove:
            remove_file(self.path)

    # Called by the registrar with the core's events.
    def _wrote(self, data: bytes) -> None:
        self._written = data

    def _settle(self, event) -> None:
        if self._outcome.done():
            return
        if event.kind == "registered":
            self._outcome.set_result(event.connection)
        elif event.kind == "failed":
            self._outcome.set_exception(
                LaunchFailed(event.message, event.exit_code, event.exit_signal))


class SharedRegistrar:
    """The process's registration socket (one per event loop and address), shared by every
    launch. Get it with :meth:`for_running_loop`."""

    _instances: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = (
        weakref.WeakKeyDictionary())

    @classmethod
    def for_running_loop(cls, ip: str = "127.0.0.1") -> "SharedRegistrar":
        loop = asyncio.get_running_loop()
        per_loop = cls._instances.setdefault(loop, {})
        registrar = per_loop.get(ip)
        if registrar is None or registrar.closed:
            registrar = per_loop[ip] = cls(ip, loop)
        return registrar

    def __init__(self, ip: str, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.clock = Clock()
        self.core = Registrar(ip=ip)
        self.closed = False
        self._launches: dict[int, Launch] = {}
        self._sends: set = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._context = zmq.asyncio.Context.instance()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        self._socket.setsockopt(zmq.RCVHWM, RCVHWM)
        self._socket.setsockopt(zmq.BACKLOG, BACKLOG)
        #: Hostile input counted, never logged with its bytes: messages the core rejected, and
        #: messages dropped unverified from peers past their strikes.
        self.rejected = 0
        self.ignored = 0
        self._strikes: dict[bytes, int] = {}
        self._drain()  # asks to bind
        self._receiver = loop.create_task(self._receive())

    @property
    def port(self) -> Optional[int]:
        return self.core.port

    def launch(self, path: str, dialect: str, kernel_id: str = "",
               timeout: float = 30.0) -> Launch:
        """Starts a launch with a fresh random key; its registration file is written to
        ``path`` before this returns. Start the kernel, then await
        :meth:`Launch.registered`."""
        key = secrets.token_hex(32)
        launch_id = self.core.launch(self.clock.now_us(), key, dialect, kernel_id, timeout)
        launch = self._launches[launch_id] = Launch(self, launch_id, path)
        self._drain()
        return launch

    def feed(self, method, *args) -> None:
        """Calls one of the core's inputs with the current time, then does what it asks."""
        method(self.clock.now_us(), *args)
        self._drain()

    def forget(self, launch: Launch) -> None:
        if self._launches.pop(launch.id, None) is not None:
            if launch.state == "bound":
                self.feed(self.core.abort, launch.id)
            self.core.remove(launch.id)

    def close(self) -> None:
        """Closes the socket (launches still pending fail at once)."""
        self.closed = True
        for launch in list(self._launches.values()):
            launch.close(remove=False)
        self._receiver.cancel()
        if self._timer:
            self._timer.cancel()
        self._socket.close(linger=0)

    def _drain(self) -> None:
        core = self.core
        while True:
            kind, *rest = core.poll_output()
            if kind == "timeout":
                self._arm(rest[0])
                return
            if kind == "transmit":
                self._send(rest[0])
            elif kind == "event":
                self._event(*rest)
            elif kind == "write_registration_file":
                launch_id, secret = rest
                launch = self._launches.get(launch_id)
                if launch is not None:
                    data = secret.expose()
                    write_private(launch.path, data)
                    launch._wrote(data)
            elif kind == "bind_registration":
                transport, ip = rest
                self._socket.bind(f"{transport}://{ip}:0")
                endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
                core.registration_bound(self.clock.now_us(), int(endpoint.rsplit(":", 1)[1]))

    def _event(self, launch_id: Optional[int], event) -> None:
        if event.kind == "rejected":
            self.rejected += 1
            log.debug("registration socket: dropped a message (%s)", event.message)
            return
        if event.kind == "refused":
            log.warning("launch %s: refused a signed request (%s)", launch_id, event.message)
            return
        launch = self._launches.get(launch_id) if launch_id is not None else None
        if launch is not None:
            launch._settle(event)

    def _send(self, frames: list) -> None:
        future = self._socket.send_multipart(frames)
        self._sends.add(future)
        future.add_done_callback(self._sent)

    def _sent(self, future) -> None:
        self._sends.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.warning("registration socket: a reply could not be sent (%s)",
                        future.exception())

    def _arm(self, deadline_us: Optional[int]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline_us is not None:
            delay = max(0.0, (deadline_us - self.clock.now_us()) / 1e6)
            self._timer = self.loop.call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self.feed(self.core.timeout)

    async def _receive(self) -> None:
        taken = 0
        while True:
            if taken >= BATCH:
                taken = 0
                await asyncio.sleep(0)
            try:
                frames = await self._socket.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as e:
                if self.closed or e.errno == zmq.ENOTSOCK:
                    return
                log.warning("registration socket: receive failed (%s)", e)
                continue
            taken += 1
            peer = frames[0]
            if self._strikes.get(peer, 0) >= STRIKES:
                self.ignored += 1
                continue
            rejected = self.rejected
            try:
                self.feed(self.core.received, frames)
            except Exception:  # e.g. a file that cannot be written: keep serving the others
                log.exception("registration socket: handling a message failed")
            if self.rejected > rejected:
                self._strike(peer)

    def _strike(self, peer: bytes) -> None:
        """Counts a rejected message against `peer` (its routing id: libzmq's, never repeated
        within a socket), within a record of at most :data:`STRANGERS` peers."""
        strikes = self._strikes.pop(peer, 0) + 1
        if len(self._strikes) >= STRANGERS:
            del self._strikes[next(iter(self._strikes))]
        self._strikes[peer] = strikes

