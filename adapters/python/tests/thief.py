"""A port thief: binds every port named in any file that appears or changes in a directory,
the moment it sees it (a compiler, a browser, another kernel would do the same by accident)."""

from __future__ import annotations

import json
import os
import socket
import threading


class Thief(threading.Thread):
    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory = str(directory)
        self.halt = threading.Event()
        self.seen: dict[str, bytes] = {}
        self.held: list[socket.socket] = []
        self.attempts = 0

    @property
    def stolen(self) -> int:
        return len(self.held)

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                entries = list(os.scandir(self.directory))
            except OSError:
                entries = []
            for entry in entries:
                try:
                    with open(entry.path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                if self.seen.get(entry.path) == data:
                    continue
                self.seen[entry.path] = data
                try:
                    info = json.loads(data)
                except ValueError:
                    continue
                if isinstance(info, dict):
                    for name, port in info.items():
                        if name.endswith("_port"):
                            self.steal(port)
            self.halt.wait(0.0002)

    def steal(self, port) -> None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return
        if not 0 < port < 65536:
            return
        self.attempts += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            s.close()
            return
        self.held.append(s)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join()
        for s in self.held:
            s.close()
