"""Compile a filter expression to inet_diag bytecode, so the kernel filters a dump itself.

The program goes in a ``INET_DIAG_REQ_BYTECODE`` attribute of the dump request
(linux/inet_diag.h). It is a list of ``inet_diag_bc_op {u8 code; u8 yes; u16 no}``
records, each followed by its operand; the kernel runs it per socket: a true
test moves ``yes`` bytes on, a false one ``no`` bytes on; ending exactly at the
end accepts the socket, ending 4 bytes past it rejects it. Jumps only go forward.

The kernel's audit wants ``yes`` to be each op's own length and every ``no`` to
land on an op (or the end), so every test here falls through when true and
jumps when false; where the true branch must go elsewhere an unconditional
``JMP`` (whose ``no`` is always taken) follows. Code is generated against
labels and the offsets resolved afterwards. Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from portlib.errors import SocketQueryError
from portlib.model import SocketState
from portlib.socktable.filters import (
    AddressMatch,
    And,
    Comparison,
    Expression,
    Not,
    Or,
    PortMatch,
    Side,
)
from portlib.socktable.procnet import TCP_STATES

INET_DIAG_REQ_BYTECODE = 1
# enum in linux/inet_diag.h
BC_JMP = 1
BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE = 2, 3, 4, 5
BC_S_COND, BC_D_COND = 7, 8
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10

_OP = struct.Struct("=BBH")
_HOSTCOND = struct.Struct("=BBxxi")  # family, prefix_len, (pad), int port (-1: any)
_ATTRIBUTE = struct.Struct("=HH")

# A kernel state code per state; request sockets use the SYN-RECV bit (the kernel adds them).
STATE_CODES: Mapping[SocketState, int] = MappingProxyType(
    {state: code for code, state in TCP_STATES.items()} | {SocketState.NEW_SYN_RECV: 3}
)


def state_mask(states: frozenset[SocketState]) -> int:
    """The ``idiag_states`` bit mask for ``states`` (states with no kernel code are ignored)."""
    mask = 0
    for state in states:
        code = STATE_CODES.get(state)
        if code is not None:
            mask |= 1 << code
    return mask


@dataclass(eq=False)
class _Label:
    """A place in the program; its offset is known once the code is laid out."""

    offset: int | None = None


@dataclass
class _Test:
    code: int
    operand: bytes
    no: _Label

    @property
    def size(self) -> int:
        return _OP.size + len(self.operand)


@dataclass
class _Jump:
    to: _Label
    size: int = field(default=_OP.size, init=False)


_Item = _Test | _Jump | _Label

# (side, comparison) -> the ops that decide it; GT and LT are the negations of LE and GE.
_RANGE_OPS: Mapping[tuple[Side, Comparison], tuple[int, bool]] = MappingProxyType(
    {
        (Side.SOURCE, Comparison.GE): (BC_S_GE, False),
        (Side.SOURCE, Comparison.LE): (BC_S_LE, False),
        (Side.SOURCE, Comparison.LT): (BC_S_GE, True),
        (Side.SOURCE, Comparison.GT): (BC_S_LE, True),
        (Side.DESTINATION, Comparison.GE): (BC_D_GE, False),
        (Side.DESTINATION, Comparison.LE): (BC_D_LE, False),
        (Side.DESTINATION, Comparison.LT): (BC_D_GE, True),
        (Side.DESTINATION, Comparison.GT): (BC_D_LE, True),
    }
)
_COND_OPS: Mapping[Side, int] = MappingProxyType(
    {Side.SOURCE: BC_S_COND, Side.DESTINATION: BC_D_COND}
)


def _hostcond(match: AddressMatch) -> bytes:
    network = match.network
    port = -1 if match.port is None else match.port
    if network is None:
        return _HOSTCOND.pack(AF_UNSPEC, 0, port)
    family = AF_INET if network.version == 4 else AF_INET6
    return _HOSTCOND.pack(family, network.prefixlen, port) + network.network_address.packed


def _leaf(expression: PortMatch | AddressMatch) -> tuple[int, bytes, bool]:
    """(op code, operand, whether the op's answer is negated) for one predicate."""
    if isinstance(expression, AddressMatch):
        return _COND_OPS[expression.side], _hostcond(expression), False
    if expression.op in (Comparison.EQ, Comparison.NE):
        # Equality is a host condition on any address: understood by every kernel.
        cond = _hostcond(AddressMatch(expression.side, None, expression.port))
        return _COND_OPS[expression.side], cond, expression.op is Comparison.NE
    code, negated = _RANGE_OPS[(expression.side, expression.op)]
    return code, _OP.pack(0, 0, expression.port), negated


def _generate(node: Expression, true: _Label, false: _Label, out: list[_Item]) -> None:
    """Append code that continues at ``true`` when ``node`` holds and at ``false`` when not."""
    if isinstance(node, Not):
        _generate(node.term, false, true, out)
    elif isinstance(node, And | Or):
        for term in node.terms[:-1]:
            after = _Label()
            if isinstance(node, And):
                _generate(term, after, false, out)
            else:
                _generate(term, true, after, out)
            out.append(after)
        _generate(node.terms[-1], true, false, out)
    else:
        code, operand, negated = _leaf(node)
        if negated:
            true, false = false, true
        out.append(_Test(code, operand, false))
        out.append(_Jump(true))


def _without_idle_jumps(items: list[_Item]) -> list[_Item]:
    """Drop jumps to the very next op: falling through does the same."""
    kept: list[_Item] = []
    for i, item in enumerate(items):
        if not (isinstance(item, _Jump) and item.to in _labels_after(items, i)):
            kept.append(item)
    return kept


def _labels_after(items: list[_Item], index: int) -> list[_Label]:
    """The labels between ``items[index]`` and the next op."""
    labels = []
    for later in items[index + 1 :]:
        if not isinstance(later, _Label):
            break
        labels.append(later)
    return labels


def _offset(label: _Label) -> int:
    if label.offset is None:
        raise AssertionError("a jump target was never placed")
    return label.offset


def compile_expression(expression: Expression) -> bytes:
    """The bytecode program for ``expression``."""
    accept, reject = _Label(), _Label()
    items: list[_Item] = []
    _generate(expression, accept, reject, items)
    items.append(accept)
    items = _without_idle_jumps(items)
    offset = 0
    for item in items:
        if isinstance(item, _Label):
            item.offset = offset
        else:
            offset += item.size
    reject.offset = offset + _OP.size
    if offset > 0xFFFF:
        raise SocketQueryError("the filter is too long for the kernel (over 64 KiB of bytecode)")
    program = bytearray()
    for item in items:
        here = len(program)
        if isinstance(item, _Test):
            program += _OP.pack(item.code, item.size, _offset(item.no) - here) + item.operand
        elif isinstance(item, _Jump):
            program += _OP.pack(BC_JMP, _OP.size, _offset(item.to) - here)
    return bytes(program)


def bytecode_attribute(expression: Expression) -> bytes:
    """The ``INET_DIAG_REQ_BYTECODE`` netlink attribute carrying ``expression``'s program."""
    program = compile_expression(expression)
    return _ATTRIBUTE.pack(_ATTRIBUTE.size + len(program), INET_DIAG_REQ_BYTECODE) + program


__all__ = ["STATE_CODES", "bytecode_attribute", "compile_expression", "state_mask"]
