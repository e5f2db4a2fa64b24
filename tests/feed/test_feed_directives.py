"""The directive-set file: canonical bytes, strict validation with field paths."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takedown.errors import InputError
from takedown.feed.directives import TARGET_NAME, dumps, format_time, loads
from takedown.model import Directive, DirectiveSet, HostRule, MeasureAction

T0 = datetime(2021, 3, 10, tzinfo=UTC)


def test_target_name():
    assert TARGET_NAME == "directives.json"


def test_same_set_same_bytes(make_set):
    a = make_set(3, n=20)
    shuffled = dataclasses.replace(a, directives=tuple(reversed(a.directives)))
    assert dumps(a) == dumps(shuffled)
    assert dumps(a) == dumps(loads(dumps(a)))
    text = dumps(a).decode()
    assert " " not in text.replace("RKN-2021", "")  # no insignificant whitespace
    assert '"generated_at":"2021-03-10T03:00:00Z"' in text
    ids = [d["id"] for d in json.loads(text)["directives"]]
    assert ids == sorted(ids)


def test_round_trip_keeps_everything(make_set):
    ds = make_set(7, n=5)
    back = loads(dumps(ds))
    assert back.sequence == 7 and back.generated_at == ds.generated_at
    by_id = {d.id: d for d in back.directives}
    for d in ds.directives:
        got = by_id[d.id]
        assert set(got.hosts) == set(d.hosts)
        assert got.ip_ranges == d.ip_ranges
        assert got.scope == d.scope and got.rate_kbps == d.rate_kbps
        assert (got.valid_from, got.expires) == (d.valid_from, d.expires)
        assert got.decisions == d.decisions and got.reference_url == d.reference_url
        assert got.measure_id == d.measure_id and got.action == d.action


def test_times_are_utc_with_z():
    from datetime import timezone

    moscow = timezone(timedelta(hours=3))
    assert format_time(datetime(2021, 3, 10, 3, 0, tzinfo=moscow)) == "2021-03-10T00:00:00Z"
    assert format_time(datetime(2021, 3, 10, 0, 0, 0, 5)) == "2021-03-10T00:00:00.000005Z"


def _doc(**changes):
    d = {
        "id": "m1",
        "action": "throttle",
        "hosts": [{"pattern": "t.co", "content_class": "media"}],
        "ip_ranges": ["192.0.2.0/24", "2001:db8::/32"],
        "rate_kbps": 128,
        "scope": {"mobile": 100.0, "fixed": 50.0},
        "valid_from": "2021-03-10T00:00:00Z",
        "expires": "2021-05-15T00:00:00Z",
        "measure_id": 1,
        "decisions": ["D-1"],
        "reference_url": "https://register.example/m/1",
    }
    d.update(changes)
    return d


def _file(directives, **top):
    doc = {
        "schema_version": 1,
        "sequence": 1,
        "generated_at": "2021-03-10T00:00:00Z",
        "directives": directives,
    }
    doc.update(top)
    return json.dumps(doc).encode()


def test_valid_file_loads():
    ds = loads(_file([_doc(), _doc(id="b2", action="block", rate_kbps=None)]))
    assert [d.id for d in ds.directives] == ["m1", "b2"]
    assert ds.directives[0].share_for("fixed") == 50.0
    assert ds.directives[1].rate_kbps is None


@pytest.mark.parametrize(
    ("top", "directive", "where"),
    [
        ({"schema_version": 2}, {}, "schema_version"),
        ({"sequence": -1}, {}, "sequence"),
        ({"generated_at": "2021-03-10 00:00"}, {}, "generated_at"),
        ({"extra": 1}, {}, "extra"),
        ({}, {"action": "slow"}, "directives[3].action"),
        ({}, {"rate_kbps": None}, "directives[3].rate_kbps"),
        ({}, {"rate_kbps": 0}, "directives[3].rate_kbps"),
        ({}, {"rate_kbps": 12.5}, "directives[3].rate_kbps"),
        ({}, {"rate_kbps": True}, "directives[3].rate_kbps"),
        ({}, {"action": "block"}, "directives[3].rate_kbps"),
        ({}, {"scope": {"mobile": 100.5}}, "directives[3].scope.mobile"),
        ({}, {"scope": {"mobile": -1}}, "directives[3].scope.mobile"),
        ({}, {"scope": {}}, "directives[3].scope"),
        ({}, {"scope": {"Mobile!": 1}}, "directives[3].scope.Mobile!"),
        ({}, {"hosts": [{"pattern": "com"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "*.co.uk"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "com.ru"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "*t.co*"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "T.CO"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "t.co."}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "192.0.2.1"}]}, "directives[3].hosts[0].pattern"),
        ({}, {"hosts": [{"pattern": "t.co", "content_class": ""}]}, "directives[3].hosts[0]"),
        ({}, {"ip_ranges": ["192.0.2.1/24"]}, "directives[3].ip_ranges[0]"),
        ({}, {"ip_ranges": ["2001:DB8::/32"]}, "directives[3].ip_ranges[0]"),
        ({}, {"ip_ranges": ["192.0.2.0/24", "300.1.1.1"]}, "directives[3].ip_ranges[1]"),
        ({}, {"hosts": [], "ip_ranges": []}, "directives[3]"),
        ({}, {"expires": "2021-03-10T00:00:00Z"}, "directives[3].expires"),
        ({}, {"expires": None}, "directives[3].expires"),
        ({}, {"expires": "2021-05-15T00:00:00+03:00"}, "directives[3].expires"),
        ({}, {"valid_from": "2021-13-01T00:00:00Z"}, "directives[3].valid_from"),
        ({}, {"measure_id": 0}, "directives[3].measure_id"),
        ({}, {"reference_url": "javascript:alert(1)"}, "directives[3].reference_url"),
        ({}, {"id": ""}, "directives[3].id"),
        ({}, {"id": "a"}, "directives[3].id"),  # duplicate of directives[0]
        ({}, {"colour": "red"}, "directives[3].colour"),
    ],
)
def test_invalid_field_is_named(top, directive, where):
    good = [_doc(id="a"), _doc(id="b"), _doc(id="c")]
    bad = _doc(id="d")
    bad.update(directive)
    data = _file([*good, bad], **top)
    with pytest.raises(InputError) as info:
        loads(data)
    assert info.value.where is not None
    assert info.value.where.startswith(where), (info.value.where, str(info.value))


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"null", b'{"schema_version":1}', b"\xff"])
def test_garbage_is_an_input_error(data):
    with pytest.raises(InputError):
        loads(data)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_never_load_nor_crash(data):
    with contextlib.suppress(InputError):
        loads(data)


_labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_hosts = st.builds(
    lambda a, b, w, c: HostRule(("*." if w else "") + f"{a}.{b}.example.org", c),
    _labels,
    _labels,
    st.booleans(),
    st.sampled_from(["any", "media", "text"]),
)
_ips = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: f"{(n >> 24) & 255}.{(n >> 16) & 255}.0.0/16"),
    st.integers(0, 2**16 - 1).map(lambda n: str(ipaddress.ip_network(f"2001:db8:{n:x}::/48"))),
)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def _directives(draw):
    action = draw(st.sampled_from(list(MeasureAction)))
    start = draw(_times)
    return Directive(
        id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)),
        action=action,
        hosts=tuple(draw(st.lists(_hosts, min_size=1, max_size=4))),
        ip_ranges=tuple(draw(st.lists(_ips, max_size=3))),
        rate_kbps=draw(st.integers(1, 10**6)) if action == MeasureAction.THROTTLE else None,
        scope=draw(
            st.dictionaries(
                st.sampled_from(["*", "mobile", "fixed"]),
                st.floats(0, 100, allow_nan=False),
                min_size=1,
            )
        ),
        valid_from=draw(st.none() | st.just(start)),
        expires=start + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=400))),
        measure_id=draw(st.none() | st.integers(1, 10**9)),
        decisions=tuple(draw(st.lists(st.text(min_size=1, max_size=20).filter(str.strip)))),
        reference_url=draw(st.none() | st.just("https://register.example/x?y=1")),
    )


@given(
    st.lists(_directives(), max_size=6, unique_by=lambda d: d.id),
    st.integers(0, 10**9),
    _times,
)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_dumps_loads_round_trip(directives, sequence, generated):
    ds = DirectiveSet(1, sequence, generated, tuple(directives))
    data = dumps(ds)
    back = loads(data)
    assert dumps(back) == data  # canonical: a fixed point
    assert {d.id: d for d in back.directives}.keys() == {d.id for d in directives}
    for d in directives:
        got = next(x for x in back.directives if x.id == d.id)
        assert sorted(got.hosts, key=str) == sorted(d.hosts, key=str)
        assert got.scope == d.scope and got.expires == d.expires
        assert got.decisions == d.decisions


_pattern_chars = st.text("abcz019-_.*XN", min_size=1, max_size=30)
_suffixy = st.sampled_from(["com", "co.uk", "com.ru", "example.org", "1", "xn--p1ai", "github.io"])


@given(st.one_of(_pattern_chars, st.tuples(_pattern_chars, _suffixy).map(".".join)))
@settings(max_examples=1000)
def test_fast_pattern_check_agrees_with_split_pattern(pattern):
    from takedown.match.rules import _slow_pattern_problem, host_pattern_problem

    assert (host_pattern_problem(pattern) is None) == (_slow_pattern_problem(pattern) is None)


@pytest.mark.parametrize(
    "pattern",
    ["t.co", "*.twimg.com", "a_b.example.org", "xn--80ak6aa92e.com", "x.1", "1.2.3.4", "github.io"],
)
def test_fast_pattern_check_examples(pattern):
    from takedown.match.rules import _slow_pattern_problem, host_pattern_problem

    assert (host_pattern_problem(pattern) is None) == (_slow_pattern_problem(pattern) is None)


_octet = st.one_of(st.integers(0, 300).map(str), st.integers(0, 99).map(lambda n: f"0{n}"))


@given(st.lists(_octet, min_size=3, max_size=5).map(".".join))
@settings(max_examples=500)
def test_fast_ipv4_check_agrees_with_ipaddress(text):
    from takedown.feed.directives import ip_range_problem

    try:
        expected = str(ipaddress.ip_address(text)) == text
    except ValueError:
        expected = False
    got = ip_range_problem(text) is None
    assert got == expected


# --- one validation: what loads accepts, every enforcement point compiles ---------------

_any_prefix = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: str(ipaddress.ip_network((t[0] >> (32 - t[1]) << (32 - t[1]), t[1])))
    ),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda t: str(ipaddress.ip_network((t[0] >> (128 - t[1]) << (128 - t[1]), t[1])))
    ),
)
_any_pattern = st.one_of(_pattern_chars, st.tuples(_pattern_chars, _suffixy).map(".".join))


def _one_rule_set(*, pattern: str | None = None, ip: str | None = None) -> bytes:
    doc = {
        "schema_version": 1,
        "sequence": 1,
        "generated_at": "2021-03-10T00:00:00Z",
        "directives": [
            {
                "id": "d1",
                "action": "block",
                "scope": {"*": 100.0},
                "expires": "2021-05-15T00:00:00Z",
                **({"hosts": [{"pattern": pattern}]} if pattern is not None else {}),
                **({"ip_ranges": [ip]} if ip is not None else {}),
            }
        ],
    }
    return json.dumps(doc).encode()


@given(
    st.one_of(_any_prefix.map(lambda ip: {"ip": ip}), _any_pattern.map(lambda p: {"pattern": p}))
)
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_a_set_that_loads_always_compiles_at_the_enforcement_point(rule):
    from takedown.enforce.decide import compile_index

    try:
        ds = loads(_one_rule_set(**rule))
    except InputError:
        return
    compile_index(ds)  # raises PatternError if the point would refuse the set


@pytest.mark.parametrize(
    ("ip", "ok"),
    [
        ("10.0.0.0/7", False),  # the attack: published, then refused by every point
        ("10.0.0.0/8", True),
        ("2001:db8::/31", False),
        ("2001:db8::/32", True),
        ("::ffff:10.0.0.0/103", False),  # an IPv4 /7 in IPv6 clothing
    ],
)
def test_prefixes_broader_than_the_matcher_takes_do_not_load(ip, ok):
    if ok:
        assert loads(_one_rule_set(ip=ip)).directives[0].ip_ranges == (ip,)
    else:
        with pytest.raises(InputError) as info:
            loads(_one_rule_set(ip=ip))
        assert info.value.where == "directives[0].ip_ranges[0]"
        assert "broader than" in info.value.message
