"""Small JSON texts (request bodies) parsed by orjson: the same data and the same messages as the general route.

:func:`allocator.spec.reading._fast_json` takes a text only when its bytes prove that the hooked
:func:`json.loads` and the value walk would give the same data and accept it. Each test parses the
same bytes twice, the fast path on and off (``_FAST_JSON_BYTES`` of -1 sends every text down the
general route), and compares what comes out: the data with its exact types (an int is not a float,
-0.0 is not 0.0), or the error's type, message and place.
"""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

import pytest
import yaml

from allocator.errors import SpecError
from allocator.service.requests import parse_json
from allocator.spec import reading

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = json.dumps(yaml.safe_load((ROOT / "scenarios" / "example.yaml").read_text())).encode()


def same(a, b) -> bool:
    """Equal JSON data, types included (``1 == 1.0`` and ``0.0 == -0.0`` are not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)) or (a != a and b != b)
    return a == b


def outcome(fn, raw: bytes):
    try:
        return ("ok", fn(raw))
    except Exception as exc:  # noqa: BLE001  (any error: its type, message and place are compared)
        return ("error", type(exc).__name__, str(exc), getattr(exc, "where", None))


def both(monkeypatch, fn, raw: bytes):
    """``fn(raw)`` with the fast path on, then with every text sent down the general route."""
    fast = outcome(fn, raw)
    with monkeypatch.context() as m:
        m.setattr(reading, "_FAST_JSON_BYTES", -1)
        general = outcome(fn, raw)
    return fast, general


def assert_alike(monkeypatch, raw: bytes) -> None:
    for fn in (lambda r: reading.parse_text(r, True), parse_json):
        fast, general = both(monkeypatch, fn, raw)
        assert fast[0] == general[0], (raw[:200], fast, general)
        if fast[0] == "ok":
            assert same(fast[1], general[1]), raw[:200]
        else:
            assert fast == general


def test_the_example_body_takes_the_fast_path_and_reads_alike(monkeypatch):
    assert reading._fast_json(EXAMPLE) is not reading._UNPROVEN
    assert_alike(monkeypatch, EXAMPLE)
    assert same(parse_json(EXAMPLE), json.loads(EXAMPLE))


NASTY = {
    # duplicate keys: at the top, nested, in a list of objects, with colons in the dropped value
    "duplicate top": b'{"a": 1, "b": 2, "a": 3}',
    "duplicate nested": b'{"x": {"k": 1, "k": 1}}',
    "duplicate in list": b'[{"a": 1}, {"b": [1, 2], "b": [1, 2]}]',
    "duplicate dropped colons": b'{"k": {"t": "a:b:c", "u": 1}, "k": 1}',
    "duplicate same text": b'{"name": "x", "name": "x"}',
    "colons in strings": b'{"a:b": "c:d", "e": "::"}',
    # what json.loads reads and orjson refuses
    "nan": b'{"a": NaN}', "infinity": b'{"a": Infinity}', "-infinity": b'{"a": -Infinity}',
    "overflow": b'{"a": 1e400}', "negative overflow": b'[-1e400]', "underflow": b'[1e-400, -1e-400]',
    # integers around 64 bits and the 40-digit limit
    "18 digits": b'[999999999999999999, -999999999999999999]',
    "19 digits": b'[1234567890123456789]', "u64 max": b'[18446744073709551615]',
    "u64 max + 1": b'[18446744073709551616]', "i64 min - 1": b'[-9223372036854775809]',
    "40 digits": b'[' + b'9' * 40 + b']', "41 digits": b'[' + b'9' * 41 + b']',
    "45 digits negative": b'{"pool": -' + b'1' * 45 + b'}',
    "long mantissa": b'[0.1000000000000000055511151231257827021181583404541015625]',
    "split mantissa": b'[123456789012345678.123456789012345678]',
    "number forms": b'[-0, -0.0, 0.0, 1E5, 1e-5, 2.5e-324, 1.7976931348623157e308, 10.0, 1.0e+2]',
    # escapes and control characters
    "escape newline": b'{"id": "a\\nb"}', "escape nul": b'{"id": "a\\u0000b"}',
    "escape quote": b'{"name": "say \\"hi\\""}', "escape slash": b'["a\\/b", "c\\\\d"]',
    "escape unicode": b'["caf\\u00e9", "\\ud83d\\ude00"]', "lone surrogate escape": b'["\\ud800"]',
    "raw tab in string": b'{"a": "x\ty"}', "raw newline in string": b'{"a": "x\ny"}',
    "raw nul": b'{"a": "x\x00y"}', "raw del": b'{"name": "x\x7fy"}', "raw c1": b'{"name": "x\xc2\x85y"}',
    "c1 in a text field": b'{"description": "x\xc2\x9fy"}',
    # unicode and encodings
    "unicode": '{"name": "caf\u00e9 \u20ac \U0001F600 \u4e2d\u6587", "\u00e9": 1}'.encode(),
    "bom": b'\xef\xbb\xbf{"a": 1}', "utf-16": '{"a": 1}'.encode("utf-16"),
    "invalid utf-8": b'{"a": "\xff"}', "surrogate bytes": b'{"a": "\xed\xa0\x80"}',
    "overlong": b'{"a": "\xc0\xaf"}', "beyond U+10FFFF": b'{"a": "\xf4\x90\x80\x80"}',
    "gzip": b'\x1f\x8b\x08\x00\x00\x00\x00\x00', "line separator": '{"a": "\u2028"}'.encode(),
    # nesting: the limit is 64 levels below the top (65 in all)
    "65 levels": b'{"a": ' + b'[' * 64 + b']' * 64 + b'}',
    "66 levels": b'{"a": ' + b'[' * 65 + b']' * 65 + b'}',
    "1100 levels": b'[' * 1100 + b']' * 1100,
    "brackets in strings": b'{"name": "a[{b", "segments": [{"id": "x]]}", "tags": ["{"]}]}',
    "deep behind brackets in strings": b'{"s": "]]]]", "a": ' + b'[' * 70 + b']' * 70 + b'}',
    # syntax
    "trailing comma": b'{"a": 1,}', "trailing garbage": b'{"a": 1} x', "unclosed": b'{"a": [1, 2',
    "single quotes": b"{'a': 1}", "leading zero": b'[01]', "plus sign": b'[+1]', "bare dot": b'[.5]',
    "empty": b'', "whitespace": b' \n\t\r ', "form feed": b'\x0c{}', "nbsp": '\u00a0{}'.encode(),
    "top number": b'7', "top string": b'"x"', "top list": b'[1, "a", null, true, false]', "top null": b'null',
    "empty object": b'{}', "spaced colons": b'{ "a" : 1 , "b" :[ ] }',
}


@pytest.mark.parametrize("raw", list(NASTY.values()), ids=list(NASTY))
def test_nasty_texts_read_alike(monkeypatch, raw):
    assert_alike(monkeypatch, raw)


def test_duplicates_are_refused_with_the_general_message(monkeypatch):
    for raw in (NASTY["duplicate nested"], NASTY["duplicate dropped colons"], NASTY["duplicate in list"]):
        assert reading._fast_json(raw) is reading._UNPROVEN
        with pytest.raises(SpecError, match="duplicate key"):
            parse_json(raw)


def test_a_body_of_the_example_with_a_duplicate_key_deep_inside(monkeypatch):
    raw = EXAMPLE.replace(b'"rate": 0.0033}', b'"rate": 0.0033, "rate": 0.0033}', 1)
    assert raw != EXAMPLE
    assert reading._fast_json(raw) is reading._UNPROVEN
    assert_alike(monkeypatch, raw)


def test_large_texts_take_the_general_route(monkeypatch):
    raw = json.dumps({"a": [1.5] * (reading._FAST_JSON_BYTES // 4)}).encode()
    assert len(raw) > reading._FAST_JSON_BYTES
    assert reading._fast_json(raw) is reading._UNPROVEN
    assert_alike(monkeypatch, raw)


SNIPPETS = [b'"', b'\\', b':', b',', b'{', b'}', b'[', b']', b'NaN', b'Infinity', b'1e400', b'-0', b'1' * 19,
            b'9' * 45, b'"name":"x",', b'"pool":1,', b'\x00', b'\x7f', b'\xc2\x85', b'\xc3\xa9', b'\xf0\x9f\x98\x80',
            b'\xed\xa0\x80', b'\xff', b'\t', b'\n', b' ', b'\\u0000', b'\\"', b'"a":1,"a":2', b'null', b'"k]":1,',
            b'[' * 70, b']' * 70, b'\xef\xbb\xbf', b'12345678901234567.8901', b'-9223372036854775809']


def test_mutated_bodies_read_alike(monkeypatch):
    """Bytes inserted, deleted and replaced at random in the example body, and pairs repeated."""
    rng = random.Random(20261127)
    fast_taken = 0
    for _ in range(1500):
        raw = bytearray(EXAMPLE)
        for _ in range(rng.choice([1, 1, 2, 3])):
            op, pos = rng.random(), rng.randrange(len(raw) + 1)
            if op < 0.4:
                raw[pos:pos] = rng.choice(SNIPPETS)
            elif op < 0.6:
                del raw[pos:pos + rng.randint(1, 3)]
            elif op < 0.8 and pos < len(raw):
                raw[pos] = rng.randrange(256)
            else:  # repeat a key and its value (a duplicate when it stays in its object)
                start = raw.find(b'"', pos)
                end = raw.find(b",", start)
                if start >= 0 and end > start:
                    raw[end:end] = b"," + raw[start:end]
        raw = bytes(raw)
        fast_taken += reading._fast_json(raw) is not reading._UNPROVEN
        assert_alike(monkeypatch, raw)
    assert fast_taken > 100  # the mutations leave many texts the fast path takes


def _decimal(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:  # the shortest text of a random double
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return repr(x) if math.isfinite(x) else "1.5"
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 36)))
    digits = digits.lstrip("0") or "0"
    cut = rng.randint(1, len(digits))
    text = digits[:cut] + ("." + digits[cut:] if cut < len(digits) else "")
    exp = rng.choice(["", f"e{rng.randint(-340, 320)}", f"E+{rng.randint(0, 30)}", f"e-{rng.randint(0, 30)}"])
    return rng.choice(["", "-"]) + text + exp


def test_numbers_read_alike(monkeypatch):
    """Doubles, long mantissas (split by the point, so no run of 19 digits stops the fast path) and exponents."""
    rng = random.Random(7)
    for _ in range(40):
        raw = ("[" + ", ".join(_decimal(rng) for _ in range(250)) + "]").encode()
        assert_alike(monkeypatch, raw)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 45), max_value=10 ** 45)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids, max_size=5),
    max_leaves=40)


QUICK = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=300, **QUICK)
@given(value=JSON_VALUES, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_generated_documents_read_alike(monkeypatch, value, ascii_only, indent):
    """Any JSON value json.dumps can write (NaN, Infinity, huge integers, escapes and all), written two ways."""
    assert_alike(monkeypatch, json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode())


@settings(max_examples=200, **QUICK)
@given(keys=st.lists(st.sampled_from(["a", "b", "a:b", "c"]), min_size=1, max_size=6),
       values=st.lists(st.sampled_from(['1', '"x:y"', '{"k": 1}', '[1, {"a": 2}]', '":"']), min_size=6, max_size=6))
def test_objects_with_repeated_keys_read_alike(monkeypatch, keys, values):
    raw = ("{" + ", ".join(f'"{k}": {v}' for k, v in zip(keys, values)) + "}").encode()
    assert_alike(monkeypatch, raw)
    assert (reading._fast_json(raw) is reading._UNPROVEN) == (len(set(keys)) < len(keys))


@pytest.mark.parametrize("doc", [
    {}, [], [[[]]], {"a": [{"b": {}}, []]}, {"k": [{"a": "x"}, [1, {"b": "y"}]]},
])
def test_small_bracket_counts_equal_the_numpy_path(monkeypatch, doc):
    """The peeling count for bodies whose strings hold no bracket equals the numpy count."""
    deep = {"a": 1}
    for _ in range(70):
        deep = {"k": [deep, "no brackets"]}
    for d in (doc, deep):
        raw = json.dumps(d).encode()
        small = reading._brackets(raw)
        with monkeypatch.context() as m:
            m.setattr(reading, "_SMALL_JSON", -1)
            assert small == reading._brackets(raw)
