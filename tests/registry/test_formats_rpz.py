"""RPZ export: its content, and a real Unbound on loopback answering from it.

Unbound forwards everything it does not block to a tiny DNS responder in this test (on
127.0.0.1), which answers every A query with 192.0.2.53: without the zone, every name
below would get that answer, so each NXDOMAIN is the policy zone's doing.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from takedown.model import Decision, ItemRecord, ItemState, RegisterEntry
from takedown.registry.formats import WRITERS
from takedown.registry.targets import parse_target_flags

WHEN = datetime(2021, 3, 10, 6, 0, tzinfo=UTC)
UPSTREAM_ANSWER = "192.0.2.53"
NXDOMAIN = 3


def need_tool(name: str) -> str:
    """The tool's path; skip without it, except under CI=true, where it must be there."""
    found = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {name})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def entry(target: str, n: int, state: ItemState = ItemState.OPEN) -> RegisterEntry:
    t, flags = parse_target_flags(target)
    record = ItemRecord(t, "suicide", "basis", Decision(f"D-{n}"), flags=flags)
    return RegisterEntry(n, record, state)


REGISTER = [
    entry("blocked.example", 1),
    entry("Blocked.Example.", 2),  # the same name under another decision: one record
    entry("*.wild.example", 3),
    entry("пример.испытание", 4),
    entry("https://twitter.com/user_1/status/1", 5),
    entry("192.0.2.99", 6),
    entry("2001:db8::/32", 7),
    entry("*malformed.example", 8),
    entry("delisted.example", 9, ItemState.DELISTED),
]


def export(entries: list[RegisterEntry]) -> tuple[str, int]:
    out = io.BytesIO()
    count = WRITERS["rpz"](entries, out, generated_at=WHEN)
    return out.getvalue().decode("ascii"), count


def test_zone_content() -> None:
    text, count = export(REGISTER)
    records = [line for line in text.splitlines() if line and not line.startswith(";")]
    assert records == [
        "$TTL 300",
        "@ IN SOA localhost. hostmaster.localhost. 1615356000 3600 600 86400 300",
        "@ IN NS localhost.",
        "blocked.example CNAME .",
        "*.wild.example CNAME .",
        "xn--e1afmkfd.xn--80akhbyknj4f CNAME .",
    ]
    assert count == 4
    assert "; skipped item 8: malformed mask" in text
    assert "1 URL items and 2 IP/CIDR items" in text


# --- a real resolver --------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".")) + b"\0"


def skip_name(data: bytes, at: int) -> int:
    while True:
        length = data[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def query(port: int, name: str) -> tuple[int, list[str]]:
    """Ask 127.0.0.1:port for the A records of ``name``; return (rcode, addresses)."""
    qid = secrets.randbits(16)
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + b"\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, ("127.0.0.1", port))
        data, _ = sock.recvfrom(4096)
    rid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", data[:12])
    assert rid == qid
    at = 12
    for _ in range(qdcount):
        at = skip_name(data, at) + 4
    addresses = []
    for _ in range(ancount):
        at = skip_name(data, at)
        rtype, _, _, length = struct.unpack("!HHIH", data[at : at + 10])
        at += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(data[at : at + length]))
        at += length
    return flags & 0xF, addresses


class Upstream:
    """A DNS responder on loopback: A queries get UPSTREAM_ANSWER, others no data."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            end = skip_name(data, 12)
            qtype = struct.unpack("!H", data[end : end + 2])[0]
            question = data[12 : end + 4]
            flags = 0x8000 | 0x0400 | 0x0080 | (struct.unpack("!H", data[2:4])[0] & 0x0100)
            answers = 1 if qtype == 1 else 0
            reply = data[:2] + struct.pack("!HHHHH", flags, 1, answers, 0, 0) + question
            if answers:
                rdata = socket.inet_aton(UPSTREAM_ANSWER)
                reply += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + rdata
            self.sock.sendto(reply, peer)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return udp.getsockname()[1]


@pytest.fixture
def resolver(tmp_path: Path) -> Iterator[int]:
    """Unbound on 127.0.0.1 loading the exported zone; yields its port."""
    unbound = need_tool("unbound")
    zone = tmp_path / "takedown.rpz"
    with zone.open("wb") as f:
        WRITERS["rpz"](REGISTER, f, generated_at=WHEN)
    with Upstream() as upstream:
        port = free_port()
        conf = tmp_path / "unbound.conf"
        conf.write_text(
            f"""server:
  interface: 127.0.0.1
  port: {port}
  outgoing-interface: 127.0.0.1
  do-ip6: no
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "{tmp_path}"
  pidfile: "{tmp_path}/unbound.pid"
  module-config: "respip iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  qname-minimisation: no
rpz:
  name: "rpz.takedown."
  zonefile: "{zone}"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{upstream.port}
remote-control:
  control-enable: no
"""
        )
        log = (tmp_path / "unbound.log").open("wb")
        proc = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdout=log, stderr=log)
        try:
            for _ in range(100):  # bounded: each try waits at most 0.1 s for a reply
                if proc.poll() is not None:
                    pytest.fail(f"unbound exited: {(tmp_path / 'unbound.log').read_text()}")
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.settimeout(0.1)
                        probe.sendto(
                            struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
                            + encode_name("ready.example")
                            + b"\0\1\0\1",
                            ("127.0.0.1", port),
                        )
                        probe.recvfrom(4096)
                    break
                except OSError:
                    continue
            else:
                pytest.fail("unbound did not answer")
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()


def test_unbound_applies_the_exported_zone(resolver: int) -> None:
    normal = (0, [UPSTREAM_ANSWER])
    assert query(resolver, "open.example") == normal  # unlisted: the normal answer
    assert query(resolver, "blocked.example") == (NXDOMAIN, [])
    assert query(resolver, "BLOCKED.example") == (NXDOMAIN, [])
    assert query(resolver, "a.b.wild.example") == (NXDOMAIN, [])  # under a listed wildcard
    assert query(resolver, "x.wild.example") == (NXDOMAIN, [])
    assert query(resolver, "xn--e1afmkfd.xn--80akhbyknj4f") == (NXDOMAIN, [])  # Cyrillic IDN
    # Exact names and label boundaries: nothing else goes dark.
    assert query(resolver, "wild.example") == normal  # the wildcard's base itself
    assert query(resolver, "sub.blocked.example") == normal  # a domain item is one name
    assert query(resolver, "notblocked.example") == normal
    assert query(resolver, "twitter.com") == normal  # a URL item does not black out its host
    assert query(resolver, "delisted.example") == normal
    assert query(resolver, "xmalformed.example") == normal
