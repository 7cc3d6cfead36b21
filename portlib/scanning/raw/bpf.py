"""Pure: a tiny classic-BPF assembler and the receive filter of the raw engine.

The kernel runs the filter on every packet before it is queued on our packet
socket, so the socket buffer only ever holds candidate replies, truncated to
the bytes classification reads. Offsets are from the network header (the
socket is ``SOCK_DGRAM``: the link header is already stripped).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Instruction classes and modes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_H_IND = 0x48
_LDX_B_MSH = 0xB1
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06

_SKF_AD_OFF = -0x1000
_SKF_AD_PROTOCOL = 0  # skb->protocol: the ethertype
_SKF_AD_PKTTYPE = 4  # PACKET_HOST, ..., PACKET_OUTGOING (4)
_SKF_AD_IFINDEX = 8

PACKET_OUTGOING = 4
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
SO_ATTACH_FILTER = 26

SNAPLEN = 256
"""Bytes kept per accepted packet: enough for IPv6 + ICMPv6 + quoted IPv6 + TCP."""


@dataclass(frozen=True, slots=True)
class Insn:
    code: int
    k: int = 0
    jt: str | int = 0  # a label name, or a relative skip
    jf: str | int = 0


def assemble(program: list[Insn | str]) -> bytes:
    """Encode instructions (strings are labels) into ``struct sock_filter`` records."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def skip(here: int, target: str | int) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - here - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"jump to {target!r} out of range")
        return distance

    out = bytearray()
    for i, insn in enumerate(insns):
        out += struct.pack(
            "=HBBI", insn.code, skip(i, insn.jt), skip(i, insn.jf), insn.k & 0xFFFFFFFF
        )
    return bytes(out)


def reply_filter(
    l4_protos: tuple[int, ...],
    dport: int,
    *,
    arp: bool = False,
    ifindexes: tuple[int, ...] = (),
) -> bytes:
    """Accept incoming ICMP(v6), TCP/UDP (``l4_protos``) to ``dport`` (and ARP); drop the rest.

    ``ifindexes``, when given, keeps only packets received on those interfaces:
    a reply crossing a bridge shows up on the bridge port and on the bridge.
    """
    prog: list[Insn | str] = [
        Insn(_LD_W_ABS, _SKF_AD_OFF + _SKF_AD_PKTTYPE),
        Insn(_JEQ_K, PACKET_OUTGOING, "drop", 0),
    ]
    if ifindexes:
        prog.append(Insn(_LD_W_ABS, _SKF_AD_OFF + _SKF_AD_IFINDEX))
        prog += [Insn(_JEQ_K, index, "ours", 0) for index in ifindexes]
        prog += [Insn(_RET_K, 0), "ours"]
    prog += [
        Insn(_LD_W_ABS, _SKF_AD_OFF + _SKF_AD_PROTOCOL),
        *([Insn(_JEQ_K, ETH_P_ARP, "accept", 0)] if arp else []),
        Insn(_JEQ_K, ETH_P_IP, "v4", 0),
        Insn(_JEQ_K, ETH_P_IPV6, "v6", "drop"),
        "v4",
        Insn(_LD_B_ABS, 9),
        Insn(_JEQ_K, 1, "accept", 0),
    ]
    for proto in l4_protos:
        prog.append(Insn(_JEQ_K, proto, "v4ports", 0))
    prog += [
        Insn(_RET_K, 0),
        "v4ports",
        Insn(_LD_H_ABS, 6),
        Insn(_JSET_K, 0x1FFF, "drop", 0),  # non-first fragment
        Insn(_LDX_B_MSH, 0),
        Insn(_LD_H_IND, 2),
        Insn(_JEQ_K, dport, "accept", "drop"),
        "v6",
        Insn(_LD_B_ABS, 6),
        Insn(_JEQ_K, 58, "accept", 0),
    ]
    for proto in l4_protos:
        prog.append(Insn(_JEQ_K, proto, "v6ports", 0))
    prog += [
        Insn(_RET_K, 0),
        "v6ports",
        Insn(_LD_H_ABS, 42),
        Insn(_JEQ_K, dport, "accept", "drop"),
        "accept",
        Insn(_RET_K, SNAPLEN),
        "drop",
        Insn(_RET_K, 0),
    ]
    return assemble(prog)
