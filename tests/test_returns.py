"""How Lua values come back (the seed's table), and result conversions that keep floats."""

from __future__ import annotations

from decimal import Decimal

import pytest


@pytest.mark.parametrize(
    "source, expected",
    [
        ("return 3.99", 3),  # numbers truncate to integers
        ("return -3.99", -3),
        ("return true", 1),  # true -> 1
        ("return false", None),  # false -> nil
        # tables stop at the first nil and drop string keys
        ("return {1, 2, 3.3333, somekey='somevalue', 'foo', nil, 'bar'}", [1, 2, 3, b"foo"]),
        ("return '3.99'", b"3.99"),  # a float survives as a string
        ("return {KEYS[1], ARGV[1]}", [b"k", b"a"]),
        ("return 9007199254740993", 9007199254740992),  # doubles above 2^53 lose precision
    ],
)
def test_lua_return_value_conversions(backend, fresh_registry, source, expected):
    script = fresh_registry.register("conversion", source)
    assert script(["k"], ["a"]) == expected


@pytest.mark.parametrize(
    "result, source, expected",
    [
        ("float", "return tostring(3.99)", 3.99),
        ("decimal", "return '0.1'", Decimal("0.1")),
        ("int", "return '42'", 42),
        ("bool", "return 1", True),
        ("bool", "return false", False),
        ("str", "return 'text'", "text"),
        ("float", "return false", None),
        # several numbers in one bulk reply, as the rate-limit scripts answer
        ("fields", "return string.format('%d %d %d', 1, -2, 2^53)", [1, -2, 2**53]),
        ("fields", "return '1 4.5999999999999996 x'", [1, "4.5999999999999996", "x"]),
        ("fields", "return false", None),
        ("fields", "return '1 --5 1_000 +5 \\194\\178 x'", [1, "--5", "1_000", "+5", "²", "x"]),
        ("fields", "return ''", []),
    ],
)
def test_declared_result_conversion(backend, fresh_registry, result, source, expected):
    script = fresh_registry.register("converted", source, result=result)
    value = script([])
    assert value == expected and type(value) is type(expected)


def test_float_arithmetic_returned_as_string_is_exact(real_client, fresh_registry):
    # INCRBYFLOAT answers with a string; returning it unchanged keeps every digit.
    # (Real servers only: fakeredis formats INCRBYFLOAT results with 17 digits.)
    script = fresh_registry.register(
        "addf", "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])", result="decimal"
    )
    assert script(["f"], ["0.1"]) == Decimal("0.1")
    assert script(["f"], ["0.2"]) == Decimal("0.3")


@pytest.mark.parametrize("result, source", [("fields", "return {1, 2}"), ("int", "return 'abc'")])
def test_a_reply_that_does_not_fit_its_conversion_is_a_typed_error(
    backend, fresh_registry, result, source
):
    from atomicops.exceptions import DataError

    script = fresh_registry.register("misfit", source, result=result)
    with pytest.raises(DataError, match="misfit"):
        script([])
