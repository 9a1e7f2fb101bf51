# SPDX-License-Identifier: Apache-2.0
"""One DNS question over UDP, answered as (response code, IPv4 addresses): enough to check the
cluster's resolver without a DNS library."""

from __future__ import annotations

import random
import socket
import struct

NOERROR, NXDOMAIN, REFUSED = 0, 3, 5


def query_a(
    server: str, name: str, *, port: int = 53, timeout: float = 3.0
) -> tuple[int, list[str]]:
    """Ask ``server`` for the A records of ``name``; return the RCODE and the addresses."""
    ident = random.getrandbits(16)
    question = b"".join(
        bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")
    )
    packet = (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + question
        + b"\0"
        + struct.pack("!HH", 1, 1)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        data, _ = sock.recvfrom(4096)
    got, flags, _, answers, _, _ = struct.unpack("!HHHHHH", data[:12])
    if got != ident:
        raise ValueError(f"DNS answer for another question (id {got}, not {ident})")
    offset = 12 + len(question) + 1 + 4
    addresses = []
    for _ in range(answers):
        offset = _skip_name(data, offset)
        rtype, _, _, length = struct.unpack("!HHIH", data[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(data[offset : offset + 4]))
        offset += length
    return flags & 0xF, addresses


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
