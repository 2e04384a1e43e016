"""Numeric bounds in the grammar: every integer in range and no other, decimals only in range.

The GBNF expressions used for numbers are regular (literals, classes, counted repeats,
alternatives), so each is checked here by turning it into a Python regex and comparing
what it matches with the bounds, over every value near the edges."""

import re
from decimal import Decimal

import pytest

from alize.engine.numeric_grammar import Bounds, integer_gbnf, integer_range, number_gbnf


def to_regex(gbnf: str) -> re.Pattern[str]:
    out = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), gbnf.removesuffix(" space"))
    return re.compile(out.replace(" ", ""))


def matches(expr: str | None, text: str) -> bool:
    return expr is not None and to_regex(expr).fullmatch(text) is not None


@pytest.mark.parametrize("lo,hi", [(0, 0), (1, 7), (0, 100), (-5, 5), (-120, -7), (7, 1234), (99, 1001),
                                   (-1000, -999), (5, None), (None, -3), (None, 42), (-37, None), (0, 9)])
def test_integer_ranges_are_exact(lo, hi):
    expr = integer_range(lo, hi)
    probes = set(range(-1300, 1300)) | {10**k + d for k in range(1, 15) for d in (-1, 0, 1)}
    probes |= {-p for p in probes}
    for value in probes:
        inside = (lo is None or value >= lo) and (hi is None or value <= hi)
        assert matches(expr, str(value)) == inside, (lo, hi, value)
    for bad in ("00", "01", "-0", "+1", "1.0", ""):
        assert not matches(expr, bad)


def test_zod_safe_integer_bounds_stay_small():
    # zod's .int() sends +-(2**53 - 1); the rule must be exact and stay a few hundred characters.
    limit = 9007199254740991
    expr = integer_range(-limit, limit)
    assert len(expr) < 1500
    for value in (limit, -limit, limit - 1, 9007199254740989, 0, 123456789012345):
        assert matches(expr, str(value))
    for value in (limit + 1, -limit - 1, 9007199254740992, 9999999999999999, 10**16):
        assert not matches(expr, str(value))


def test_empty_ranges():
    assert integer_range(3, 2) is None
    assert integer_gbnf(Bounds.of({"minimum": 2.2, "maximum": 2.8})) is None
    assert number_gbnf(Bounds.of({"minimum": 3, "maximum": 2})) is None


@pytest.mark.parametrize(("schema", "inside", "outside"), [
    ({"exclusiveMinimum": 0, "exclusiveMaximum": 1}, ["0.5", "0.01", "0.999"], ["0", "0.0", "1", "1.0", "-0.5"]),
    ({"exclusiveMinimum": -1, "exclusiveMaximum": 0}, ["-0.5", "-0.001"], ["0", "-1", "-0.0"]),
])
def test_decimals_between_two_integers(schema, inside, outside):
    expr = number_gbnf(Bounds.of(schema))
    assert all(matches(expr, text) for text in inside)
    assert not any(matches(expr, text) for text in outside)


@pytest.mark.parametrize("schema", [
    {"minimum": 1, "maximum": 7}, {"exclusiveMinimum": 0}, {"minimum": 0, "exclusiveMaximum": 1},
    {"minimum": -3, "maximum": -1}, {"minimum": -2.5, "maximum": 3.5}, {"exclusiveMaximum": 10},
    {"minimum": 0.5}, {"minimum": 5, "exclusiveMinimum": True, "maximum": 6},  # draft 4 spelling
])
def test_decimals_stay_within_bounds(schema):
    bounds = Bounds.of(schema)
    expr = number_gbnf(bounds)
    assert expr is not None
    produced = 0
    for whole in range(-15, 16):
        for frac in ("", ".0", ".5", ".999", ".0001"):
            for text in (f"{whole}{frac}", f"-0{frac}" if whole == 0 and frac else None):
                if text is None or not matches(expr, text):
                    continue
                produced += 1
                value = Decimal(text)
                low_ok = bounds.minimum is None or (value > bounds.minimum if bounds.exclusive_min
                                                    else value >= bounds.minimum)
                high_ok = bounds.maximum is None or (value < bounds.maximum if bounds.exclusive_max
                                                     else value <= bounds.maximum)
                assert low_ok and high_ok, (schema, text)
    assert produced >= 1  # the grammar leaves room to answer


def test_integer_schema_bounds():
    assert matches(integer_gbnf(Bounds.of({"exclusiveMinimum": 0})), "1")
    assert not matches(integer_gbnf(Bounds.of({"exclusiveMinimum": 0})), "0")
    assert matches(integer_gbnf(Bounds.of({"minimum": 1, "maximum": 7})), "7")
    assert Bounds.of({"type": "integer"}) is None


def test_a_converter_failure_is_a_logged_server_error_not_the_clients(monkeypatch, caplog):
    from llama_cpp.llama_grammar import SchemaConverter

    from alize.engine import grammar
    from alize.errors import EngineFailure, InvalidRequest
    from alize.services.structured import compile_schema

    def broken(self, schema, name):
        raise KeyError("a library bug")

    monkeypatch.setattr(SchemaConverter, "visit", broken)
    with pytest.raises(EngineFailure) as info:
        grammar.schema_to_gbnf({"type": "object", "properties": {"a": {"type": "string"}}})
    assert info.value.status_code == 500 and "a library bug" in info.value.message
    assert "converter failed" in caplog.text
    with pytest.raises(EngineFailure):  # the service lets it through as a 500, never a 400
        compile_schema({"type": "object", "properties": {"b": {"type": "string"}}})
    with pytest.raises(InvalidRequest):  # what the client asked for and cannot have is still a 400
        compile_schema({"type": "integer", "multipleOf": 3}, strict=True)
