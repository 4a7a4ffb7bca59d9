"""Tests for sparselmm.formula (lme4 formula parsing)."""

import pytest
from formulaic import Formula

from sparselmm.formula import FormulaError, ParsedFormula, RandomTerm, parse_formula

R = RandomTerm
P = ParsedFormula

CASES = {
    # the lme4 reference formulas
    "Yield ~ 1 + (1|Batch)": P("Yield", "1", (R("1", ("Batch",)),)),
    "Reaction ~ 1 + Days + (1 + Days|Subject)":
        P("Reaction", "1 + Days", (R("1 + Days", ("Subject",)),)),
    "Reaction ~ 1 + Days + (1|Subject) + (0 + Days|Subject)":
        P("Reaction", "1 + Days", (R("1", ("Subject",)), R("0 + Days", ("Subject",)))),
    "diameter ~ 1 + (1|plate) + (1|sample)":
        P("diameter", "1", (R("1", ("plate",)), R("1", ("sample",)))),
    "strength ~ 1 + (1|batch) + (1|batch:cask)":
        P("strength", "1", (R("1", ("batch",)), R("1", ("batch", "cask")))),
    "y ~ 1 + service + (1|s) + (1|d) + (1|dept)":
        P("y", "1 + service", (R("1", ("s",)), R("1", ("d",)), R("1", ("dept",)))),
    "score ~ Machine + (0 + Machine|Worker)":
        P("score", "Machine", (R("0 + Machine", ("Worker",)),)),
    "y ~ a*b + (1|a/b)": P("y", "a * b", (R("1", ("a",)), R("1", ("a", "b")))),
    "y ~ x + (1 + x || g)": P("y", "x", (R("1", ("g",)), R("0 + x", ("g",)))),
    # implicit / explicit intercepts in bar terms
    "y ~ x + (1|g)": P("y", "x", (R("1", ("g",)),)),
    "y ~ x + (x|g)": P("y", "x", (R("x", ("g",)),)),
    "y ~ x + (x - 1|g)": P("y", "x", (R("x - 1", ("g",)),)),
    "y ~ x + (0 + x|g)": P("y", "x", (R("0 + x", ("g",)),)),
    # || expansion
    "y ~ (x + z || g)": P("y", "1", (R("1", ("g",)), R("0 + x", ("g",)), R("0 + z", ("g",)))),
    "y ~ (0 + x + z || g)": P("y", "1", (R("0 + x", ("g",)), R("0 + z", ("g",)))),
    "y ~ (x + x:z || g)": P("y", "1", (R("1", ("g",)), R("0 + x", ("g",)), R("0 + x:z", ("g",)))),
    "y ~ (x || a/b)": P("y", "1", (R("1", ("a",)), R("0 + x", ("a",)),
                                   R("1", ("a", "b")), R("0 + x", ("a", "b")))),
    # grouping factors
    "y ~ (1|a/b/c)": P("y", "1", (R("1", ("a",)), R("1", ("a", "b")), R("1", ("a", "b", "c")))),
    "y ~ (1 + x|a/b)": P("y", "1", (R("1 + x", ("a",)), R("1 + x", ("a", "b")))),
    "y ~ (1|a:b/c)": P("y", "1", (R("1", ("a", "b")), R("1", ("a", "b", "c")))),
    "y ~ (1|a/b:c)": P("y", "1", (R("1", ("a",)), R("1", ("a", "b", "c")))),
    "y ~ (1|g.id)": P("y", "1", (R("1", ("g.id",)),)),
    # order: as written, expansion in place
    "y ~ (1|h) + x + (1 + x || g) + (1|a/b)":
        P("y", "x", (R("1", ("h",)), R("1", ("g",)), R("0 + x", ("g",)),
                     R("1", ("a",)), R("1", ("a", "b")))),
    # fixed part
    "y ~ (1|g)": P("y", "1", (R("1", ("g",)),)),
    "y ~ 0 + (1|g)": P("y", "0", (R("1", ("g",)),)),
    "y ~ -1 + x + (1|g)": P("y", "-1 + x", (R("1", ("g",)),)),
    "y ~ (1|g) + x - 1": P("y", "x - 1", (R("1", ("g",)),)),
    "y ~ (1|g) - 1": P("y", "-1", (R("1", ("g",)),)),
    "y ~ x + (x + (1|g))": P("y", "x + x", (R("1", ("g",)),)),
    "log(y) ~ log(x) + C(f) + (1|g)": P("log(y)", "log(x) + C(f)", (R("1", ("g",)),)),
    "y ~ (a + b):c + x^2 + I(x**2) + (1|g)":
        P("y", "(a + b):c + x ^ 2 + I(x ** 2)", (R("1", ("g",)),)),
    "y ~ a*b:c + (1|g)": P("y", "a * b:c", (R("1", ("g",)),)),
    # whitespace normalisation
    "  y~x+z+(1+x|g)  ": P("y", "x + z", (R("1 + x", ("g",)),)),
    "y ~ x +\n   ( 1 + x |  g )": P("y", "x", (R("1 + x", ("g",)),)),
    # no random term at all is fine here
    "y ~ x + z": P("y", "x + z", ()),
    "y ~ 1": P("y", "1", ()),
}


@pytest.mark.parametrize("formula", CASES)
def test_parse(formula):
    assert parse_formula(formula) == CASES[formula]


@pytest.mark.parametrize("formula", CASES)
def test_outputs_parse_with_formulaic(formula):
    parsed = parse_formula(formula)
    Formula(parsed.fixed)
    for term in parsed.random:
        Formula(term.expr)


@pytest.mark.parametrize("formula", [
    "y ~ a*b + (1|a/b)", "y ~ (a + b):c + x^2 + I(x**2) + (1|g)", "y ~ a*b:c + (1|g)",
    "y ~ x + (x + (1|g))",
])
def test_fixed_keeps_formulaic_meaning(formula):
    """The fixed part means the same to formulaic as the formula minus bar terms."""
    rhs = formula.split("~")[1].split("+ (")[0]
    want = [str(t) for t in Formula(rhs)]
    assert [str(t) for t in Formula(parse_formula(formula).fixed)] == want


def test_group_and_intercept():
    assert R("1", ("batch", "cask")).group == "batch:cask"
    assert R("1", ("g",)).group == "g"
    for expr, has in [("1", True), ("1 + x", True), ("x", True), ("x + z", True),
                      ("0 + x", False), ("x - 1", False), ("x + 0", False),
                      ("-1 + x", False), ("0 + Machine", False)]:
        assert R(expr, ("g",)).has_intercept is has, expr


def test_expanded_terms_intercepts():
    terms = parse_formula("y ~ (x + z || g)").random
    assert [t.has_intercept for t in terms] == [True, False, False]


def test_frozen():
    term = R("1", ("g",))
    with pytest.raises(AttributeError):
        term.expr = "x"  # type: ignore[misc]


def test_formula_error_is_value_error():
    assert issubclass(FormulaError, ValueError)


ERRORS = [
    ("y + x", r"'y \+ x' has no '~'"),
    ("~ x + (1|g)", "empty response"),
    ("  ~ x", "empty response"),
    ("y ~ x ~ z", "more than one '~'"),
    ("y ~ ", "no terms"),
    ("y ~ x + (1|g", r"unbalanced parentheses.*position 4.*'\(1\|g'"),
    ("y ~ x + 1|g)", r"unbalanced parentheses.*unmatched '\)' at position 7"),
    ("y ~ (1|)", r"nothing after the bar.*'\(1\|\)'"),
    ("y ~ (1||)", r"nothing after the bar.*'\(1\|\|\)'"),
    ("y ~ (|g)", r"nothing before the bar.*'\(\|g\)'"),
    ("y ~ (1|g+h)", r"unsupported grouping factor.*'\(1\|g\+h\)'"),
    ("y ~ (1|log(g))", r"unsupported grouping factor.*'\(1\|log\(g\)\)'"),
    ("y ~ (1|g*h)", "unsupported grouping factor"),
    ("y ~ (1|1)", "unsupported grouping factor"),
    ("y ~ x + 1|g", r"'x \+ 1 \| g' must be enclosed in parentheses"),
    ("y ~ 1|g", "must be enclosed in parentheses"),
    ("y ~ (x) + 1|g", r"'\(x\) \+ 1\|g' must be enclosed in parentheses"),
    ("y ~ x + (1|g) + z || h", "must be enclosed in parentheses"),
    ("y ~ x + log(1|g)", r"nested inside 'log\(1 \| g\)'"),
    ("y ~ x + z:(1|g)", "nested inside"),
    ("y ~ x + ((1|g) + (1|h)):z", "nested inside"),
    ("y ~ (0 || g)", r"'\|\|' term '\(0 \|\| g\)' has no columns"),
    ("y ~ (0|g)", r"random term '\(0\|g\)' has no columns"),
    ("y ~ (-1|g)", "has no columns"),
    ("y ~ x - (1|g)", r"cannot subtract random-effects term '\(1\|g\)'"),
    ("y ~ x %in% z", "cannot parse right-hand side"),
]


@pytest.mark.parametrize(("formula", "message"), ERRORS)
def test_errors(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_formula_error_is_the_library_error():
    from sparselmm.errors import FormulaError as LibFormulaError, SparseLMMError

    assert FormulaError is LibFormulaError
    with pytest.raises(SparseLMMError):
        parse_formula("y ~ (1|)")
