"""Parse lme4-style model formulas into a fixed part and random-effect terms.

The right-hand side is parsed with Python's :mod:`ast` after length-preserving
substitutions (``||`` -> ``>>``, ``:`` -> ``@``, ``^`` -> ``%``) that make it
Python syntax and give every formula operator except ``+``, ``-`` and the bars
a Python precedence above ``+``/``-``.  The Python tree is only trusted for
the top-level ``+``/``-`` split, the bars and the grouping factors; the text
of every sub-expression is taken from the user's own source, so operator
precedences that differ between Python and formulaic cannot change meaning.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass


from sparselmm.errors import FormulaError

__all__ = ["FormulaError", "RandomTerm", "ParsedFormula", "parse_formula"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | factors)``.

    Attributes
    ----------
    expr : str
        Left side of the bar as a formulaic right-hand side, e.g. ``"1 + x"``.
    factors : tuple of str
        Grouping variables whose interaction is the grouping factor.
    """

    expr: str
    factors: tuple[str, ...]

    @property
    def group(self) -> str:
        """lme4's name of the grouping factor, e.g. ``"batch:cask"``."""
        return ":".join(self.factors)

    @property
    def has_intercept(self) -> bool:
        """Whether ``expr`` includes an (explicit or implicit) intercept."""
        return "1" in term_labels(self.expr)


@dataclass(frozen=True)
class ParsedFormula:
    """A parsed mixed-model formula.

    Attributes
    ----------
    response : str
        Left-hand side text, e.g. ``"log(y)"``.
    fixed : str
        Fixed-effects right-hand side for formulaic (``"1"`` if only random
        terms were given, ``"0"`` for no fixed effects).
    random : tuple of RandomTerm
        Random-effects terms in formula order, after ``||`` and ``/`` expansion.
    offsets : tuple of str
        The expressions of the ``offset(...)`` terms (each a numeric expression of the data, in
        formulaic's syntax), which add up to the model's offset.
    """

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...] = ()

    @property
    def fixed_with_offsets(self) -> str:
        """The fixed part with its ``offset(...)`` terms, as a formula's right side to refit."""
        return " + ".join([self.fixed, *(f"offset({o})" for o in self.offsets)])


_BARS = (ast.BitOr, ast.RShift)  # "|" and "||" (substituted by ">>")


def term_labels(expr: str) -> list[str]:
    """Model terms of a formulaic RHS string (``"1"`` is the intercept)."""
    from formulaic import Formula  # on first use: formulaic takes 70 ms to import

    return [str(t) for t in Formula(expr)]


def _check_parens(rhs: str, formula: str) -> None:
    """Raise if parentheses are unbalanced or a bar has an empty side."""
    opens: list[int] = []
    for i, ch in enumerate(rhs):
        if ch == "(":
            opens.append(i)
        elif ch == ")":
            if not opens:
                raise FormulaError(f"unbalanced parentheses in {formula!r}: unmatched "
                                   f"')' at position {i} of the right side {rhs!r}")
            opens.pop()
    if opens:
        raise FormulaError(f"unbalanced parentheses in {formula!r}: '(' at position "
                           f"{opens[-1]} of the right side is never closed: {rhs[opens[-1]:]!r}")
    for m in re.finditer(r"\|\|?", rhs):
        start = rhs.rfind("(", 0, m.start())
        end = rhs.find(")", m.end())
        term = rhs[max(start, 0):end + 1 if end >= 0 else len(rhs)]
        if rhs[m.end():].lstrip()[:1] in ("", ")"):
            raise FormulaError(f"nothing after the bar in random term {term!r}")
        if rhs[:m.start()].rstrip()[-1:] in ("", "("):
            raise FormulaError(f"nothing before the bar in random term {term!r}")


class _Rhs:
    """Right-hand side source with helpers mapping AST nodes back to text."""

    def __init__(self, rhs: str):
        code = rhs.replace("||", ">>").replace(":", "@").replace("^", "%")
        try:
            self.tree = ast.parse(code, mode="eval").body
        except SyntaxError as exc:
            raise FormulaError(f"cannot parse right-hand side {rhs!r}: {exc.msg}") from None
        self.code, self.orig = code.encode(), rhs.encode()  # offsets are UTF-8 bytes

    def span(self, node: ast.expr) -> tuple[int, int]:
        """Byte span of ``node`` widened to the parentheses enclosing it."""
        i, j, s = node.col_offset, node.end_col_offset, self.code
        while True:
            a, b = s[:i].rstrip(), s[j:].lstrip()
            if not (a.endswith(b"(") and b.startswith(b")")):
                return i, j
            i, j = len(a) - 1, len(s) - len(b) + 1

    def text(self, node: ast.expr) -> str:
        """Source of ``node`` including its enclosing parentheses.

        Normalised like ``ast.unparse`` when that keeps every non-blank
        character, otherwise the user's text with collapsed whitespace.
        """
        i, j = self.span(node)
        return _tidy(node, self.orig[i:j].decode())

    def inner_text(self, node: ast.expr) -> str:
        """Source of ``node`` without the parentheses around it (a call's argument)."""
        return _tidy(node, self.orig[node.col_offset:node.end_col_offset].decode())


def _tidy(node: ast.expr, orig: str) -> str:
    """``ast.unparse`` text if it keeps every non-blank character of ``orig``."""
    pretty = ast.unparse(node).replace(" @ ", ":").replace(" % ", " ^ ")
    if re.sub(r"\s", "", pretty) == re.sub(r"\s", "", orig):
        return pretty
    return " ".join(orig.split())


def _offset(node: ast.expr, rhs: _Rhs) -> str | None:
    """The argument's text of an ``offset(expr)`` term, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "offset"):
        return None
    if len(node.args) != 1 or node.keywords:
        raise FormulaError(f"offset() takes one expression, as in 'offset(log(exposure))', not {rhs.text(node)!r}")
    return rhs.inner_text(node.args[0])


def _has_bar(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, _BARS)
               for n in ast.walk(node))


def _leaves(node: ast.expr) -> list[tuple[str, ast.expr]]:
    """Flatten the top-level ``+``/``-`` chain into ``(sign, operand)`` pairs.

    A parenthesised right operand of ``+`` is entered only if it holds a
    random term (as lme4 does); other groups stay one opaque term.
    """
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        out = _leaves(node.left)
        if isinstance(node.op, ast.Add) and _has_bar(node.right):
            return out + _leaves(node.right)
        return out + [("+" if isinstance(node.op, ast.Add) else "-", node.right)]
    return [("+", node)]


def _dotted(node: ast.expr) -> str | None:
    """``g`` or ``g.h`` as a variable name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


def _grouping(node: ast.expr, term: str) -> list[tuple[str, ...]]:
    """Expand ``a``, ``a:b``, ``a/b``, ``a:b/c`` into nested factor tuples."""
    seq: list[str] = []  # names and "/" / ":" in source order

    def walk(n: ast.expr) -> None:
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Div, ast.MatMult)):
            walk(n.left)
            seq.append("/" if isinstance(n.op, ast.Div) else ":")
            walk(n.right)
        elif (name := _dotted(n)) is not None:
            seq.append(name)
        else:
            raise FormulaError(f"unsupported grouping factor in random term {term!r}: "
                               "use a variable name, 'a:b' or 'a/b'")

    walk(node)
    levels = " ".join(seq).split(" / ")
    factors: list[str] = []
    out = []
    for level in levels:
        factors += level.split(" : ")
        out.append(tuple(factors))
    return out


def _random_terms(node: ast.BinOp, rhs: _Rhs) -> list[RandomTerm]:
    """Expand one bar term ``(lhs | grouping)`` / ``(lhs || grouping)``."""
    term = rhs.text(node)
    lhs = rhs.text(node.left)
    try:
        labels = term_labels(lhs)
    except Exception as exc:  # formulaic's own parse errors
        raise FormulaError(f"cannot parse left side {lhs!r} of random term {term!r}: "
                           f"{exc}") from None
    double = isinstance(node.op, ast.RShift)
    if not labels:
        kind = "'||' term" if double else "random term"
        raise FormulaError(f"{kind} {term!r} has no columns: its left side {lhs!r} "
                           "removes the intercept and has no variables")
    exprs = [lhs]
    if double:
        exprs = [t if t == "1" else f"0 + {t}" for t in labels]
    return [RandomTerm(e, f) for f in _grouping(node.right, term) for e in exprs]


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and random terms.

    Parameters
    ----------
    formula : str
        Two-sided formula such as ``"y ~ 1 + x + (1 + x | g)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        If the formula is malformed or uses unsupported random-term syntax.
    """
    if formula.count("~") != 1:
        what = "no '~'" if "~" not in formula else "more than one '~'"
        raise FormulaError(f"formula {formula!r} has {what}; expected 'response ~ terms'")
    lhs, rhs = (" ".join(part.split()) for part in formula.split("~"))
    if not lhs:
        raise FormulaError(f"formula {formula!r} has an empty response (left of '~')")
    try:
        lhs = _tidy(ast.parse(lhs, mode="eval").body, lhs)
    except SyntaxError:
        pass  # not Python syntax: keep the response text as written
    if not rhs:
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    _check_parens(rhs, formula)
    parsed = _Rhs(rhs)
    fixed: list[tuple[str, str]] = []
    random: list[RandomTerm] = []
    offsets: list[str] = []
    for sign, node in _leaves(parsed.tree):
        text = parsed.text(node)
        if (offset := _offset(node, parsed)) is not None:
            if sign == "-":
                raise FormulaError(f"cannot subtract the offset term {text!r}: write offset(-({offset}))")
            offsets.append(offset)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _BARS):
            if parsed.span(node)[0] == node.col_offset:
                raise FormulaError(f"random-effects term {text!r} must be enclosed "
                                   "in parentheses, e.g. '(1 | g)'")
            if sign == "-":
                raise FormulaError(f"cannot subtract random-effects term {text!r}")
            random += _random_terms(node, parsed)
        elif _has_bar(node):
            raise FormulaError(f"random-effects bar nested inside {text!r}; random "
                               "terms must be top-level '(expr | g)' terms")
        else:
            fixed.append((sign, text))
    if not fixed:
        fixed_text = "1"
    else:
        fixed_text = " ".join(f"{s} {t}" for s, t in fixed)[2:]  # drop leading sign
        if fixed[0][0] == "-":  # e.g. "(1 | g) - 1"
            fixed_text = "-" + fixed_text
    return ParsedFormula(lhs, fixed_text, tuple(random), tuple(offsets))
