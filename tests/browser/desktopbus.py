"""A desktop's notification server for the browser tests: a private D-Bus session bus
(`dbus-daemon`) on which the test owns `org.freedesktop.Notifications`, the service a
Linux desktop runs to show notifications.

Chromium on Linux hands a web notification to that service when one is on its session
bus, and a reader's click comes back from it as an `ActionInvoked` signal: the same path as
on a desktop, so the service worker gets a real `notificationclick`, the only event in
which a browser lets it open a window. The server records what the browser shows and
closes; `click(id)` is the reader's click. Only the D-Bus wire format this needs is
written here (little-endian, no file descriptors): the test needs no D-Bus library.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procs

DBUS_DAEMON = "/usr/bin/dbus-daemon"
NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"

# Only what the bus needs: no services to start on demand, everyone may talk to everyone.
CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={folder}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
# Header fields (D-Bus specification, "Message Format").
F_PATH, F_INTERFACE, F_MEMBER, F_ERROR_NAME, F_REPLY_SERIAL = 1, 2, 3, 4, 5
F_DESTINATION, F_SENDER, F_SIGNATURE = 6, 7, 8
FIELD_TYPES = {
    F_PATH: "o",
    F_INTERFACE: "s",
    F_MEMBER: "s",
    F_ERROR_NAME: "s",
    F_REPLY_SERIAL: "u",
    F_DESTINATION: "s",
    F_SENDER: "s",
    F_SIGNATURE: "g",
}
ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4}
ALIGN |= {"s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}
FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q"}
FIXED |= {"d": "d", "h": "I"}


def _end(signature: str, start: int) -> int:
    """Where the single complete type starting at `start` ends."""
    code = signature[start]
    if code == "a":
        return _end(signature, start + 1)
    if code in "({":
        close = ")" if code == "(" else "}"
        at = start + 1
        while signature[at] != close:
            at = _end(signature, at)
        return at + 1
    return start + 1


def split(signature: str) -> list[str]:
    """ "susssasa{sv}i" -> ["s", "u", "s", "s", "s", "as", "a{sv}", "i"]."""
    types, at = [], 0
    while at < len(signature):
        end = _end(signature, at)
        types.append(signature[at:end])
        at = end
    return types


class _Writer:
    def __init__(self) -> None:
        self.data = bytearray()

    def align(self, n: int) -> None:
        self.data += bytes(-len(self.data) % n)

    def write(self, kind: str, value: Any) -> None:
        code = kind[0]
        self.align(ALIGN[code])
        if code in FIXED:
            self.data += struct.pack("<" + FIXED[code], value)
        elif code in "so":
            raw = value.encode()
            self.data += struct.pack("<I", len(raw)) + raw + b"\0"
        elif code == "g":
            raw = value.encode()
            self.data += bytes([len(raw)]) + raw + b"\0"
        elif code == "v":
            inner, content = value
            self.write("g", inner)
            self.write(inner, content)
        elif code == "a":
            element = kind[1:]
            at = len(self.data)
            self.data += bytes(4)
            self.align(ALIGN[element[0]])
            start = len(self.data)
            items = value.items() if element[0] == "{" else value
            for item in items:
                self.write(element, item)
            struct.pack_into("<I", self.data, at, len(self.data) - start)
        elif code in "({":
            for inner, content in zip(split(kind[1:-1]), value, strict=True):
                self.write(inner, content)
        else:
            raise ValueError(f"cannot write D-Bus type {kind}")


class _Reader:
    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data = data
        self.at = at

    def read(self, kind: str) -> Any:
        code = kind[0]
        self.at += -self.at % ALIGN[code]
        if code in FIXED:
            (value,) = struct.unpack_from("<" + FIXED[code], self.data, self.at)
            self.at += struct.calcsize(FIXED[code])
            return value
        if code in "sog":
            if code == "g":
                size = self.data[self.at]
                self.at += 1
            else:
                (size,) = struct.unpack_from("<I", self.data, self.at)
                self.at += 4
            text = self.data[self.at : self.at + size].decode()
            self.at += size + 1
            return text
        if code == "v":
            inner = self.read("g")
            return inner, self.read(inner)
        if code == "a":
            (size,) = struct.unpack_from("<I", self.data, self.at)
            self.at += 4
            element = kind[1:]
            self.at += -self.at % ALIGN[element[0]]
            end, items = self.at + size, []
            while self.at < end:
                items.append(self.read(element))
            return dict(items) if element[0] == "{" else items
        if code in "({":
            return tuple(self.read(inner) for inner in split(kind[1:-1]))
        raise ValueError(f"cannot read D-Bus type {kind}")


@dataclass
class Message:
    kind: int
    serial: int
    fields: dict[int, Any]
    args: list[Any] = field(default_factory=list)
    flags: int = 0

    @property
    def member(self) -> str:
        return self.fields.get(F_MEMBER, "")

    def encode(self) -> bytes:
        signature = self.fields.get(F_SIGNATURE, "")
        body = _Writer()
        for kind, value in zip(split(signature), self.args, strict=True):
            body.write(kind, value)
        head = _Writer()
        for kind, value in (("y", ord("l")), ("y", self.kind), ("y", self.flags), ("y", 1)):
            head.write(kind, value)
        head.write("u", len(body.data))
        head.write("u", self.serial)
        head.write("a(yv)", [(code, (FIELD_TYPES[code], v)) for code, v in self.fields.items()])
        head.align(8)
        return bytes(head.data + body.data)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the bus closed the connection")
        data += chunk
    return data


def read_message(sock: socket.socket) -> Message:
    start = _receive(sock, 16)
    assert start[:1] == b"l", "only little-endian messages are read here"
    kind, flags = start[1], start[2]
    body_size, serial, fields_size = struct.unpack_from("<III", start, 4)
    head_size = 16 + fields_size + (-(16 + fields_size) % 8)
    data = start + _receive(sock, head_size - 16 + body_size)
    fields = dict(_Reader(data, 12).read("a(yv)"))
    fields = {code: value for code, (_, value) in fields.items()}
    reader = _Reader(data[head_size:])
    args = [reader.read(kind) for kind in split(fields.get(F_SIGNATURE, ""))]
    return Message(kind, serial, fields, args, flags)


@dataclass
class Shown:
    """A notification as the browser handed it to the desktop."""

    id: int
    app: str
    title: str
    body: str
    actions: list[str]


class NotificationServer:
    """`org.freedesktop.Notifications` on the bus at `address`: what the browser shows is
    kept in `shown` (by id) and what it closes in `closed`; `click(id)` is a reader's click
    on a notification's body. `calls` names the methods called, for a failure's message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.shown: dict[int, Shown] = {}
        self.closed: list[int] = []
        self.calls: list[str] = []
        self.problems: list[str] = []
        self._serial = 0
        self._next_id = 1
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        path = address.removeprefix("unix:path=").split(",")[0]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        answer = self._sock.recv(4096)
        assert answer.startswith(b"OK "), answer
        self._sock.sendall(b"BEGIN\r\n")
        bus = {F_DESTINATION: "org.freedesktop.DBus", F_PATH: "/org/freedesktop/DBus"}
        bus[F_INTERFACE] = "org.freedesktop.DBus"
        self._call({**bus, F_MEMBER: "Hello"})
        owner = self._call({**bus, F_MEMBER: "RequestName", F_SIGNATURE: "su"}, NAME, 4)
        assert owner.args == [1], f"{NAME} is owned already: {owner}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _send(self, kind: int, fields: dict[int, Any], *args: Any) -> int:
        with self._lock:
            self._serial += 1
            message = Message(kind, self._serial, fields, list(args))
            self._sock.sendall(message.encode())
            return self._serial

    def _call(self, fields: dict[int, Any], *args: Any) -> Message:
        """A method call to the bus itself, before serving: its reply."""
        serial = self._send(METHOD_CALL, fields, *args)
        while True:
            message = read_message(self._sock)
            if message.fields.get(F_REPLY_SERIAL) == serial:
                assert message.kind == METHOD_RETURN, message
                return message

    def _reply(self, call: Message, signature: str = "", *args: Any) -> None:
        if call.flags & NO_REPLY_EXPECTED:
            return
        fields = {F_REPLY_SERIAL: call.serial, F_DESTINATION: call.fields[F_SENDER]}
        if signature:
            fields[F_SIGNATURE] = signature
        self._send(METHOD_RETURN, fields, *args)

    def _signal(self, member: str, signature: str, *args: Any) -> None:
        fields = {F_PATH: PATH, F_INTERFACE: NAME, F_MEMBER: member, F_SIGNATURE: signature}
        self._send(SIGNAL, fields, *args)

    def _serve(self) -> None:
        while True:
            try:
                message = read_message(self._sock)
            except (ConnectionError, OSError):
                return
            if message.kind != METHOD_CALL:
                continue
            try:
                self._answer(message)
            except Exception as problem:  # kept, for the test to report
                self.problems.append(f"{message.member}: {problem!r}")

    def _answer(self, call: Message) -> None:
        member = call.member
        self.calls.append(member)
        if member == "GetCapabilities":
            self._reply(call, "as", ["actions", "body"])
        elif member == "GetServerInformation":
            self._reply(call, "ssss", "ticker-tests", "ticker", "1", "1.2")
        elif member == "Notify":
            app, replaces, _icon, title, body, actions, _hints, _timeout = call.args
            with self._changed:
                number = replaces or self._next_id
                self._next_id = max(self._next_id, number + 1)
                self.shown[number] = Shown(number, app, title, body, actions)
                self._changed.notify_all()
            self._reply(call, "u", number)
        elif member == "CloseNotification":
            (number,) = call.args
            with self._changed:
                self.closed.append(number)
                self._changed.notify_all()
            self._reply(call)
            self._signal("NotificationClosed", "uu", number, 3)  # 3: closed by a call
        else:
            if not call.flags & NO_REPLY_EXPECTED:
                fields = {
                    F_REPLY_SERIAL: call.serial,
                    F_DESTINATION: call.fields[F_SENDER],
                    F_ERROR_NAME: "org.freedesktop.DBus.Error.UnknownMethod",
                    F_SIGNATURE: "s",
                }
                self._send(ERROR, fields, f"no {member} here")

    def wait_for(self, check: Callable[[], Any], timeout: float = 10) -> Any:
        """Until `check()` is true (it reads `shown` and `closed`); its last answer."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (answer := check()) and time.monotonic() < deadline:
                self._changed.wait(0.1)
            return answer

    def click(self, number: int) -> None:
        """A reader clicks the notification's body: the desktop says "default" was invoked."""
        self._signal("ActionInvoked", "us", number, "default")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def desktop_notifications(folder: Path) -> Iterator[NotificationServer]:
    """A session bus of its own in `folder` with the test's notification server on it; a
    browser started with DBUS_SESSION_BUS_ADDRESS=server.address shows its notifications
    there. A missing dbus-daemon is installed with apt-get when that is allowed (root in CI);
    anywhere else it stops the test with instructions: never a skip."""
    if not Path(DBUS_DAEMON).exists() and os.environ.get("CI") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "dbus-daemon"], check=False)
    if not Path(DBUS_DAEMON).exists():
        raise RuntimeError(
            "dbus-daemon is missing: install the Debian package (`sudo apt-get install -y "
            "dbus-daemon`); the notification tests run a session bus of their own."
        )
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "bus.conf"
    config.write_text(CONFIG.format(folder=folder))
    bus = subprocess.Popen(
        [DBUS_DAEMON, "--nofork", "--print-address", f"--config-file={config}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
        server = NotificationServer(address)
        try:
            yield server
        finally:
            server.close()
        assert server.problems == [], server.problems
    finally:
        procs.stop(bus)
