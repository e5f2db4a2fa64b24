"""Ladder files: the bad inputs the issue names are refused with file, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.policy import expr, spec

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[ladder]
name = "t"

[[rule]]
name = "slow"
when = "overdue > 0"
action = "throttle"
rate_kbps = 128
classes = ["media"]
scope = { mobile = 100, fixed = 50 }

[[rule]]
name = "block"
when = 'overdue > 0 and days_in_force("slow") >= 30'
action = "block"
scope = { mobile = 100, fixed = 100 }
needs_approval = true
replaces = ["slow"]
"""


def refused(text: str, tmp_path: Path) -> InputError:
    path = tmp_path / "ladder.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        spec.load(path)
    assert str(path) in str(info.value)
    return info.value


def test_examples_load() -> None:
    for path in (ROOT / "examples" / "ladders").glob("*.toml"):
        ladder = spec.load(path)
        assert ladder.rules and ladder.digest


def test_good_ladder_loads(tmp_path: Path) -> None:
    path = tmp_path / "ladder.toml"
    path.write_text(GOOD)
    ladder = spec.load(path)
    assert [r.name for r in ladder.rules] == ["slow", "block"]
    assert ladder.rules[0].scope == {"mobile": 100.0, "fixed": 50.0}
    assert ladder.rules[1].classes == ()


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    err = refused(GOOD.replace("rate_kbps = 128", "rate_kbps = = 128"), tmp_path)
    assert err.where.endswith(":9") and "syntax" in err.message


def test_condition_syntax_error_names_rule_and_field(tmp_path: Path) -> None:
    err = refused(GOOD.replace('when = "overdue > 0"', 'when = "overdue > > 0"'), tmp_path)
    assert "rule 'slow' field 'when'" in err.where and "column 11" in err.message


def test_unknown_figure(tmp_path: Path) -> None:
    err = refused(GOOD.replace('when = "overdue > 0"', 'when = "overdeu > 0"'), tmp_path)
    assert "rule 'slow' field 'when'" in err.where
    assert "unknown figure 'overdeu'" in err.message


def test_unknown_function_and_unknown_rule_reference(tmp_path: Path) -> None:
    err = refused(GOOD.replace("overdue > 0 and", "mystery(1) > 0 and"), tmp_path)
    assert "rule 'block' field 'when'" in err.where and "unknown function" in err.message
    err = refused(GOOD.replace('days_in_force("slow")', 'days_in_force("slo")'), tmp_path)
    assert "no rule named 'slo'" in err.message


def test_impossible_scope(tmp_path: Path) -> None:
    err = refused(GOOD.replace("fixed = 50", "fixed = 150"), tmp_path)
    assert "rule 'slow' field 'scope'.fixed" in err.where and "150" in err.message


def test_unknown_subscriber_class(tmp_path: Path) -> None:
    err = refused(GOOD.replace("fixed = 50", "satellite = 50"), tmp_path)
    assert "rule 'slow' field 'scope'.satellite" in err.where


def test_throttle_without_rate(tmp_path: Path) -> None:
    err = refused(GOOD.replace("rate_kbps = 128\n", ""), tmp_path)
    assert "rule 'slow' field 'rate_kbps'" in err.where and "rate" in err.message


def test_block_without_approval(tmp_path: Path) -> None:
    err = refused(GOOD.replace("needs_approval = true", "needs_approval = false"), tmp_path)
    assert "rule 'block' field 'needs_approval'" in err.where
    err = refused(GOOD.replace("needs_approval = true\n", ""), tmp_path)
    assert "rule 'block' field 'needs_approval'" in err.where


def test_contradictory_rules(tmp_path: Path) -> None:
    err = refused(GOOD.replace('replaces = ["slow"]\n', ""), tmp_path)
    assert "rule 'block' field 'when'" in err.where
    assert "contradicts rule 'slow'" in err.message and "mobile" in err.message


def test_contradictory_rates_on_same_scope(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
[[rule]]
name = "slower"
when = "overdue > 100"
action = "throttle"
rate_kbps = 64
classes = ["media", "text"]
scope = { fixed = 100 }
"""
    )
    err = refused(text, tmp_path)
    assert "rule 'slower'" in err.where and "contradicts rule 'slow'" in err.message


def test_exclusive_conditions_are_not_contradictory() -> None:
    text = (
        GOOD.replace('replaces = ["slow"]\n', "")
        .replace("overdue > 0 and days_in_force", "overdue >= 500 and days_in_force")
        .replace('when = "overdue > 0"', 'when = "overdue > 0 and overdue < 500"')
    )
    ladder = spec.loads(text)
    assert len(ladder.rules) == 2


def test_disjoint_obligation_states() -> None:
    a = expr.parse('obligation("data-localisation") == "violating"')
    b = expr.parse('obligation("data-localisation") == "compliant" and overdue > 0')
    c = expr.parse("overdue > 0")
    assert spec.disjoint(a, b)
    assert not spec.disjoint(a, c)


def test_different_content_classes_do_not_conflict() -> None:
    text = GOOD.replace('replaces = ["slow"]\n', "").replace(
        'action = "block"', 'action = "block"\nclasses = ["text"]'
    )
    assert len(spec.loads(text).rules) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('action = "throttle"', 'action = "slowdown"'), "action"),
        (('classes = ["media"]', 'classes = "media"'), "classes"),
        (("rate_kbps = 128", 'rate_kbps = 128\nreview = "soon"'), "review"),
        (("rate_kbps = 128", 'rate_kbps = 128\ncolour = "red"'), "rule 'slow'"),
        (("rate_kbps = 128", "rate_kbps = -5"), "rate_kbps"),
        (('replaces = ["slow"]', 'replaces = ["nope"]'), "replaces"),
    ],
)
def test_other_bad_fields(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    err = refused(GOOD.replace(*change), tmp_path)
    assert field in err.where


def test_lift_rule_must_name_a_measure_rule(tmp_path: Path) -> None:
    text = GOOD + '\n[[rule]]\nname = "off"\nwhen = "overdue == 0"\naction = "lift"\nlifts = "x"\n'
    err = refused(text, tmp_path)
    assert "rule 'off' field 'lifts'" in err.where


def test_unknown_obligation_state_and_kind(tmp_path: Path) -> None:
    err = refused(
        GOOD.replace('"overdue > 0"', """'obligation("data-localisation") == "violatng"'"""),
        tmp_path,
    )
    assert "unknown obligation state" in err.message
    err = refused(GOOD.replace('"overdue > 0"', """'obligation("tax") == "violating"'"""), tmp_path)
    assert "unknown obligation 'tax'" in err.message


def test_expression_types() -> None:
    for bad in [
        "overdue",
        "overdue + 1",
        '"a" < "b"',
        'overdue == "x"',
        "not overdue",
        "removed_share_change(1.5) > 0",
        "removed_share_change(0) > 0",
        "(overdue > 1",
    ]:
        with pytest.raises(expr.ExprError):
            expr.parse(bad)


def test_expression_evaluation_three_valued() -> None:
    node = expr.parse("removed_share >= 90% or overdue == 0")
    values = {"removed_share": None, "overdue": 0}
    reads: dict[str, object] = {}
    assert expr.evaluate(node, lambda n: values[n.value], reads) is True
    assert reads == {"removed_share": None, "overdue": 0}
    node = expr.parse("removed_share >= 90% and overdue == 0")
    assert expr.evaluate(node, lambda n: values[n.value]) is None
    node = expr.parse("(remaining - 10) / flagged * 100 > 5 and not overdue > 3")
    vals = {"remaining": 20, "flagged": 100, "overdue": 1}
    assert expr.evaluate(node, lambda n: vals[n.value]) is True


# --- property: the parser never crashes with anything but ExprError -----------------------

ALPHABET = st.sampled_from(
    [
        "overdue",
        "removed_share",
        "and",
        "or",
        "not",
        "(",
        ")",
        ">",
        ">=",
        "==",
        "<",
        "!=",
        "+",
        "-",
        "*",
        "/",
        "0",
        "1",
        "90%",
        "0.5",
        '"x"',
        "days_in_force",
        "change",
        ",",
        " ",
        "true",
        "@",
        "'",
        "#",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=12).map(" ".join))
def test_parser_only_raises_expr_error(text: str) -> None:
    try:
        node = expr.parse(text)
    except expr.ExprError as exc:
        assert exc.column >= 1
        return
    assert node.type == expr.BOOL
    # whatever parses, evaluates without error on some figures
    expr.evaluate(node, lambda n: 1)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["overdue", "remaining", "flagged"]),
    st.sampled_from(["<", "<=", ">", ">=", "=="]),
    st.integers(-5, 5),
    st.sampled_from(["<", "<=", ">", ">=", "=="]),
    st.integers(-5, 5),
)
def test_disjoint_is_sound(name: str, op1: str, c1: int, op2: str, c2: int) -> None:
    """If disjoint() says two conditions never hold at once, no value makes both true."""
    a = expr.parse(f"{name} {op1} {c1}")
    b = expr.parse(f"{name} {op2} {c2}")
    both = [
        v
        for v in [x / 2 for x in range(-14, 15)]
        if expr.evaluate(a, lambda n, v=v: v) and expr.evaluate(b, lambda n, v=v: v)
    ]
    if spec.disjoint(a, b):
        assert both == []
    else:
        assert both
