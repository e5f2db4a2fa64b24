"""A small, safe condition language for ladder rules: parsed, type-checked, never ``eval``-ed.

Grammar (precedence low to high)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := prod (("+" | "-") prod)*
    prod    := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER ["%"] | STRING | "true" | "false" | NAME | NAME "(" args ")" | "(" expr ")"

``90%`` is the number 0.9. Names and functions come from a fixed registry (see
``NAMES`` and ``FUNCTIONS``); anything else is an error when the ladder is loaded. A value
that is unknown at evaluation time (a share with no denominator, no history yet) is
``None``; comparisons and arithmetic on it give ``None`` and a rule whose condition is
``None`` does not fire.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from takedown.errors import InputError

NUM, STR, BOOL = "number", "string", "bool"

# Figures of the ledger a condition may read (model.Figures fields), all numbers.
NAMES: dict[str, str] = {
    "flagged": NUM,
    "removed": NUM,
    "restricted": NUM,
    "claimed": NUM,
    "remaining": NUM,
    "overdue": NUM,
    "removed_share": NUM,
    "on_time_share": NUM,
    "ttr_median_h": NUM,
    "ttr_p90_h": NUM,
    # re-uploads of the items' media found under other URLs (takedown.media)
    "reuploads_found": NUM,
    "reuploads_removed": NUM,
    "reuploads_open": NUM,
}

# name -> (argument types, result type, doc). Arguments must be literals.
FUNCTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "days_in_force": ((STR,), NUM, "days the measure of the named rule has been active (0 if not)"),
    "removed_share_change": ((NUM,), NUM, "removed_share now minus N days ago"),
    "change": ((STR, NUM), NUM, "a figure now minus its value N days ago"),
    "new_items": ((NUM,), NUM, "items listed in the last N days"),
    "new_items_on_time_share": (
        (NUM,),
        NUM,
        "on-time share of the items listed in the last N days (None if none due yet)",
    ),
    "obligation": ((STR,), STR, "state of the named obligation ('none' if not recorded)"),
}

OBLIGATION_KINDS = {"data-localisation"}
OBLIGATION_STATES = {"compliant", "violating", "none"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+(?:\.\d+)?%?)
      | (?P<str>"[^"\\]*"|'[^'\\]*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><=|>=|==|!=|[<>()+\-*/,])
    )""",
    re.VERBOSE,
)


class ExprError(InputError):
    """A condition that does not parse or type-check; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.column = column


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the parsed condition. ``kind``: num, str, bool, name, call, op, not."""

    kind: str
    value: Any = None
    args: tuple[Node, ...] = ()
    type: str = NUM
    col: int = 0

    def text(self) -> str:
        """Canonical source text (used as the key of a figure read)."""
        if self.kind == "num":
            return repr(self.value)
        if self.kind == "str":
            return f'"{self.value}"'
        if self.kind == "bool":
            return "true" if self.value else "false"
        if self.kind == "name":
            return str(self.value)
        if self.kind == "call":
            return f"{self.value}({', '.join(a.text() for a in self.args)})"
        if self.kind == "not":
            return f"not {self.args[0].text()}"
        if self.kind == "neg":
            return f"-{self.args[0].text()}"
        return f"({self.args[0].text()} {self.value} {self.args[1].text()})"


def _tokens(src: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            start = len(src) - len(src[pos:].lstrip())
            raise ExprError(f"unexpected character {src[start]!r}", start + 1)
        kind = m.lastgroup or ""
        text = m.group(kind)
        out.append((kind, text, m.start(kind) + 1))
        pos = m.end()
    out.append(("end", "", len(src) + 1))
    return out


class _Parser:
    def __init__(self, src: str, rule_names: frozenset[str] | None) -> None:
        self.toks = _tokens(src)
        self.i = 0
        self.rule_names = rule_names

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, val, col = self.take()
        if val != text or kind not in ("op",):
            raise ExprError(f"expected {text!r}, found {val or 'end of condition'!r}", col)

    def is_word(self, word: str) -> bool:
        kind, val, _ = self.peek()
        return kind == "name" and val == word

    def parse(self) -> Node:
        node = self.or_()
        kind, val, col = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {val!r}", col)
        if node.type != BOOL:
            raise ExprError("a condition must be true or false, not a " + node.type, node.col)
        return node

    def _bool_op(self, word: str, sub: Callable[[], Node]) -> Node:
        left = sub()
        while self.is_word(word):
            col = self.take()[2]
            right = sub()
            for side in (left, right):
                if side.type != BOOL:
                    raise ExprError(f"'{word}' needs true/false operands", side.col)
            left = Node("op", word, (left, right), BOOL, col)
        return left

    def or_(self) -> Node:
        return self._bool_op("or", self.and_)

    def and_(self) -> Node:
        return self._bool_op("and", self.not_)

    def not_(self) -> Node:
        if self.is_word("not"):
            col = self.take()[2]
            inner = self.not_()
            if inner.type != BOOL:
                raise ExprError("'not' needs a true/false operand", inner.col)
            return Node("not", None, (inner,), BOOL, col)
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum()
        kind, val, col = self.peek()
        if kind == "op" and val in ("<", "<=", ">", ">=", "==", "!="):
            self.take()
            right = self.sum()
            if left.type != right.type:
                raise ExprError(f"cannot compare a {left.type} with a {right.type}", col)
            if left.type != NUM and val not in ("==", "!="):
                raise ExprError(f"'{val}' compares numbers only", col)
            self._check_obligation_state(left, right)
            return Node("op", val, (left, right), BOOL, col)
        return left

    def _check_obligation_state(self, left: Node, right: Node) -> None:
        for a, b in ((left, right), (right, left)):
            is_state = a.kind == "call" and a.value == "obligation" and b.kind == "str"
            if is_state and b.value not in OBLIGATION_STATES:
                known = ", ".join(sorted(OBLIGATION_STATES))
                raise ExprError(f"unknown obligation state {b.value!r} ({known})", b.col)

    def _arith(self, ops: tuple[str, ...], sub: Callable[[], Node]) -> Node:
        left = sub()
        while True:
            kind, val, col = self.peek()
            if kind != "op" or val not in ops:
                return left
            self.take()
            right = sub()
            for side in (left, right):
                if side.type != NUM:
                    raise ExprError(f"'{val}' needs numbers", side.col)
            left = Node("op", val, (left, right), NUM, col)

    def sum(self) -> Node:
        return self._arith(("+", "-"), self.prod)

    def prod(self) -> Node:
        return self._arith(("*", "/"), self.unary)

    def unary(self) -> Node:
        kind, val, col = self.peek()
        if kind == "op" and val == "-":
            self.take()
            inner = self.unary()
            if inner.type != NUM:
                raise ExprError("'-' needs a number", inner.col)
            return Node("neg", None, (inner,), NUM, col)
        return self.atom()

    def atom(self) -> Node:
        kind, val, col = self.take()
        if kind == "num":
            if val.endswith("%"):
                return Node("num", float(val[:-1]) / 100.0, (), NUM, col)
            return Node("num", float(val) if "." in val else int(val), (), NUM, col)
        if kind == "str":
            return Node("str", val[1:-1], (), STR, col)
        if kind == "op" and val == "(":
            inner = self.or_()
            self.expect(")")
            return inner
        if kind == "name":
            if val in ("true", "false"):
                return Node("bool", val == "true", (), BOOL, col)
            if val in ("and", "or", "not"):
                raise ExprError(f"unexpected {val!r}", col)
            if self.peek()[1] == "(" and self.peek()[0] == "op":
                return self.call(val, col)
            if val not in NAMES:
                known = ", ".join(sorted(NAMES))
                raise ExprError(f"unknown figure {val!r} (known: {known})", col)
            return Node("name", val, (), NAMES[val], col)
        raise ExprError(f"unexpected {val or 'end of condition'!r}", col)

    def call(self, name: str, col: int) -> Node:
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExprError(f"unknown function {name!r} (known: {known})", col)
        self.expect("(")
        args: list[Node] = []
        if self.peek()[1] != ")":
            while True:
                acol = self.peek()[2]
                arg = self.atom()
                if arg.kind not in ("num", "str"):
                    raise ExprError(f"arguments of {name}() must be literals", acol)
                args.append(arg)
                if self.peek()[1] == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        want, result, _ = FUNCTIONS[name]
        if len(args) != len(want):
            raise ExprError(f"{name}() takes {len(want)} argument(s), got {len(args)}", col)
        for arg, typ in zip(args, want, strict=True):
            if arg.type != typ:
                raise ExprError(f"{name}(): expected a {typ}, got {arg.text()}", arg.col)
            if typ == NUM and (not isinstance(arg.value, int) or arg.value <= 0):
                raise ExprError(f"{name}(): days must be a positive whole number", arg.col)
        self._check_call(name, args, col)
        return Node("call", name, tuple(args), result, col)

    def _check_call(self, name: str, args: list[Node], col: int) -> None:
        known_rules = self.rule_names
        if name == "days_in_force" and known_rules is not None and args[0].value not in known_rules:
            raise ExprError(f"days_in_force(): no rule named {args[0].value!r}", args[0].col)
        if name == "obligation" and args[0].value not in OBLIGATION_KINDS:
            known = ", ".join(sorted(OBLIGATION_KINDS))
            raise ExprError(f"unknown obligation {args[0].value!r} (known: {known})", args[0].col)
        if name == "change" and args[0].value not in NAMES:
            raise ExprError(f"change(): unknown figure {args[0].value!r}", args[0].col)


def parse(src: str, *, rule_names: frozenset[str] | None = None) -> Node:
    """Parse and type-check a condition; raise ExprError naming the column."""
    if not isinstance(src, str) or not src.strip():
        raise ExprError("empty condition", 1)
    return _Parser(src, rule_names).parse()


def calls(node: Node) -> list[Node]:
    """Every function call in ``node`` (to know which history windows a ladder needs)."""
    out = [node] if node.kind == "call" else []
    for arg in node.args:
        out.extend(calls(arg))
    return out


Resolver = Callable[[Node], Any]


def evaluate(node: Node, resolve: Resolver, reads: dict[str, Any] | None = None) -> Any:
    """Evaluate with three-valued logic; ``resolve`` gives names and calls their values.

    Every name or call read is recorded in ``reads`` (canonical text -> value).
    """
    kind = node.kind
    if kind in ("num", "str", "bool"):
        return node.value
    if kind in ("name", "call"):
        value = resolve(node)
        if reads is not None:
            reads[node.text()] = value
        return value
    if kind == "not":
        inner = evaluate(node.args[0], resolve, reads)
        return None if inner is None else not inner
    if kind == "neg":
        inner = evaluate(node.args[0], resolve, reads)
        return None if inner is None else -inner
    op = node.value
    if op in ("and", "or"):
        # Both sides are evaluated so the record of what was read is complete.
        a = evaluate(node.args[0], resolve, reads)
        b = evaluate(node.args[1], resolve, reads)
        if op == "and":
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    a = evaluate(node.args[0], resolve, reads)
    b = evaluate(node.args[1], resolve, reads)
    if a is None or b is None:
        return None
    return _BINARY[op](a, b)


def _div(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


_BINARY: Mapping[str, Callable[[Any, Any], Any]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _div,
}
