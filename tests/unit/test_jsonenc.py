"""The client-imitating JSON encoders, checked byte for byte against php-cli (and node).

PHP receives each value as JSON text and re-encodes what ``json_decode`` made of it. It decodes
without ``$assoc`` so that a JSON object stays a ``stdClass`` and comes back as an object: with
``$assoc = true`` PHP turns ``{}`` into ``[]`` and ``{"0": "a", "1": "b"}`` into ``["a","b"]``,
which is what a PHP client writes for its own arrays but not what the server received, and
``php_json_encode`` encodes what the server received (see ``test_assoc_decoding_differs``).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import php_binary
from vod2s3.jsonenc import PHP_MAX_DEPTH, php_json_encode, plain_json_encode

# Reads "<mode><json text>\n" lines (mode "o": objects as stdClass, "a": assoc arrays) and
# answers each with json_encode's output, or "!" and the error, on one line.
_PHP_ROUNDTRIP_LOOP = r"""
while (($line = fgets(STDIN)) !== false) {
    $value = json_decode(substr(rtrim($line, "\n"), 1), $line[0] === 'a');
    if (json_last_error() !== JSON_ERROR_NONE) {
        echo '!decode: ', json_last_error_msg(), "\n";
    } else {
        $out = json_encode($value);
        echo $out === false ? '!encode: ' . json_last_error_msg() : $out, "\n";
    }
    flush();
}
"""


class PhpJson:
    """One long-lived php-cli process, so hundreds of values cost one interpreter start."""

    def __init__(self, binary: str) -> None:
        self._proc = subprocess.Popen(
            [binary, "-r", _PHP_ROUNDTRIP_LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def roundtrip(self, text: str, *, assoc: bool = False) -> str:
        """``json_encode(json_decode($text, $assoc))`` as PHP writes it."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        # json_decode accepts the same text on one line; fgets() splits on "\n" only.
        one_line = json.dumps(json.loads(text)) if "\n" in text else text
        self._proc.stdin.write(("a" if assoc else "o").encode() + one_line.encode() + b"\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        assert answer.endswith(b"\n"), f"php exited: {answer!r}"
        return answer[:-1].decode("utf-8")

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=10)


@pytest.fixture(scope="module")
def php() -> Iterator[PhpJson]:
    server = PhpJson(php_binary())
    yield server
    server.close()


# JSON texts as a client could send them; Python and PHP each parse the same text.
PHP_CORPUS = [
    r'"a/b/c.mp4"',
    r'"https:\/\/example.com\/x"',
    '"é"',
    '"東京"',
    '"😀"',
    r'"\ud83d\ude00"',
    r'"quote \" backslash \\ end\\"',
    r'"\u0000\u0001\u0008\u000b\u001f\b\f\n\r\t"',
    r'"del \u007f"',
    r'"\u2028\u2029"',
    r'"<tag> & \u0027apos\u0027 %20 +"',
    r'"\uffff\ufeff\u00a0"',
    '""',
    r'{"a/b":"c","é":1,"":2,"sp ace":3}',
    r'{"a":[1,{"b":{"c":[]}}],"d":{},"e":[{}],"f":[[]]}',
    "{}",
    "[]",
    "[[]]",
    "[{}]",
    r'{"0":"a","1":"b"}',
    r'{"a":1,"a":2,"b":3}',
    '{\n  "pretty": [1, 2],\n  "x": {"y": null}\n}',
    "0",
    "-0",
    "-1",
    "25",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1.5",
    "-1.5",
    "0.1",
    "0.30000000000000004",
    "0.0",
    "-0.0",
    "10.0",
    "100.0",
    "1E2",
    "1e15",
    "1e16",
    "1e17",
    "1e22",
    "1e25",
    "123456789012345678.0",
    "1234567.125",
    "0.001",
    "0.0001",
    "0.00012345",
    "0.00001",
    "2.5e-5",
    "1e-7",
    "-1.5e-10",
    "5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "1.5e300",
    "true",
    "false",
    "null",
    r'[true,false,null,0,"",[],{}]',
    r'{"command":"aws.upload","path":"sestore1/jb/clip.mp4","metadata":{"title":"Café ☕"}}',
]


@pytest.mark.php
@pytest.mark.parametrize("text", PHP_CORPUS)
def test_php_encoder_matches_php_cli(php: PhpJson, text: str) -> None:
    assert php_json_encode(json.loads(text)) == php.roundtrip(text)


@pytest.mark.php
def test_assoc_decoding_differs(php: PhpJson) -> None:
    # PHP's own arrays: an empty or 0..n-1 keyed array is a list for json_encode.
    assert php.roundtrip("{}", assoc=True) == "[]"
    assert php.roundtrip('{"0":"a","1":"b"}', assoc=True) == '["a","b"]'
    assert php_json_encode({}) == php.roundtrip("{}") == "{}"
    assert php_json_encode({"0": "a", "1": "b"}) == php.roundtrip('{"0":"a","1":"b"}')


@pytest.mark.php
def test_key_starting_with_nul(php: PhpJson) -> None:
    text = r'{"\u0000a":1}'
    # stdClass cannot have such a property; a PHP array can, so compare in assoc mode.
    assert php.roundtrip(text).startswith("!decode")
    assert php_json_encode(json.loads(text)) == php.roundtrip(text, assoc=True) == text


@pytest.mark.php
@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"\ud800"', "\ud800"),
        (r'"a\udc00b"', "a\udc00b"),
        ("[1e400]", [math.inf]),
        ("[-1e400]", [-math.inf]),
    ],
)
def test_php_failures_match(php: PhpJson, text: str, value: object) -> None:
    assert php.roundtrip(text).startswith("!")
    with pytest.raises(ValueError, match=r"\S"):
        php_json_encode(value)


@pytest.mark.php
def test_depth_limit_matches_php(php: PhpJson) -> None:
    # json_decode's default depth admits one level less than json_encode's (511 arrays).
    decodable = "[" * (PHP_MAX_DEPTH - 1) + "1" + "]" * (PHP_MAX_DEPTH - 1)
    assert php_json_encode(json.loads(decodable)) == php.roundtrip(decodable) == decodable
    assert php.roundtrip("[" + decodable + "]").startswith("!decode")
    deepest = "[" * PHP_MAX_DEPTH + "1" + "]" * PHP_MAX_DEPTH
    assert php_json_encode(json.loads(deepest)) == deepest
    # Values PHP cannot decode are built inside PHP to check json_encode's own limit.
    script = (
        "foreach ([1, [], new stdClass] as $leaf) {"
        f" for ($i = 0; $i < {PHP_MAX_DEPTH}; $i++) {{ $leaf = [$leaf]; }}"
        " var_export(json_encode($leaf) === false); echo ','; }"
    )
    done = subprocess.run([php_binary(), "-r", script], capture_output=True, check=True)
    assert done.stdout == b"false,true,true,"
    too_deep: list[object] = []
    for _ in range(PHP_MAX_DEPTH):
        too_deep = [too_deep]
    with pytest.raises(ValueError, match="nesting"):
        php_json_encode(too_deep)
    with pytest.raises(ValueError, match="nesting"):
        php_json_encode(json.loads("[" * PHP_MAX_DEPTH + "{}" + "]" * PHP_MAX_DEPTH))


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
# PHP's stdClass refuses property names starting with NUL (tested separately above).
_php_keys = st.text().filter(lambda key: not key.startswith("\x00"))
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_php_keys, children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.php
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=_json_values)
def test_php_encoder_matches_php_cli_on_random_values(php: PhpJson, value: Any) -> None:
    assert php_json_encode(value) == php.roundtrip(json.dumps(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "1.5"),
        (0.1, "0.1"),
        (10.0, "10"),
        (-0.0, "-0"),
        (0.0, "0"),
        (1e15, "1000000000000000"),
        (1e16, "10000000000000000"),
        (1e17, "1.0e+17"),
        (1e25, "1.0e+25"),
        (1.5e300, "1.5e+300"),
        (0.0001, "0.0001"),
        (0.00001, "1.0e-5"),
        (2.5e-5, "2.5e-5"),
        (5e-324, "5.0e-324"),
        (2**63 - 1, "9223372036854775807"),
        (2**63, "9.223372036854776e+18"),
        (-(2**63) - 1, "-9.223372036854776e+18"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_php_numbers(value: object, expected: str) -> None:
    assert php_json_encode(value) == expected


def test_php_strings_and_structure() -> None:
    value = {"path": "a/b", "t": "é東京😀\u2028\x7f\x01\n", "e": {}, "l": [], "n": [1, [2]]}
    assert php_json_encode(value) == (
        r'{"path":"a\/b","t":"\u00e9\u6771\u4eac\ud83d\ude00\u2028'
        + "\x7f"
        + r'\u0001\n","e":{},"l":[],"n":[1,[2]]}'
    )


def test_php_rejects_non_json_types() -> None:
    with pytest.raises(TypeError):
        php_json_encode({1, 2})
    with pytest.raises(TypeError):
        php_json_encode({1: "int key"})


def test_php_huge_integer_is_unencodable() -> None:
    with pytest.raises(ValueError, match="too large"):
        php_json_encode(10**400)


def test_plain_raw_utf8() -> None:
    value = {"path": "a/b", "t": "é東京😀\u2028\x7f\x01", "x": 1.0, "big": 2**70, "e": {}}
    assert plain_json_encode(value, ascii_only=False) == (
        '{"path":"a/b","t":"é東京😀\u2028\x7f\\u0001","x":1.0,"big":1180591620717411303424,"e":{}}'
    )


def test_plain_ascii_only() -> None:
    value = {"path": "a/b", "t": "é東京😀\u2028\x7f"}
    assert plain_json_encode(value, ascii_only=True) == (
        r'{"path":"a/b","t":"\u00e9\u6771\u4eac\ud83d\ude00\u2028\u007f"}'
    )


def test_plain_lone_surrogate() -> None:
    assert plain_json_encode("\ud800", ascii_only=True) == r'"\ud800"'
    with pytest.raises(ValueError, match="surrogate"):
        plain_json_encode("\ud800", ascii_only=False)


@pytest.mark.parametrize("ascii_only", [False, True])
def test_plain_refuses_nan(ascii_only: bool) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        plain_json_encode([math.nan], ascii_only=ascii_only)


def _exact_in_javascript(value: object) -> bool:
    """Whether JS holds the value exactly and prints it like Python: no floats (JS writes
    ``1`` for ``1.0``), no integers beyond 2**53, no integer-like keys (JS sorts those first)."""
    if isinstance(value, float):
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= 2**53
    if isinstance(value, list):
        return all(_exact_in_javascript(item) for item in value)
    if isinstance(value, dict):
        return all(not key.isdigit() and _exact_in_javascript(item) for key, item in value.items())
    return True


def test_plain_matches_javascript_for_non_floats() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; JSON.stringify compatibility not checked")
    texts = [text for text in PHP_CORPUS if _exact_in_javascript(json.loads(text))]
    script = (
        "const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter(Boolean);"
        "process.stdout.write(lines.map(l => JSON.stringify(JSON.parse(l))).join('\\n'));"
    )
    lines = "\n".join(json.dumps(json.loads(text)) for text in texts)
    done = subprocess.run(
        [node, "-e", script], input=lines.encode(), capture_output=True, check=True
    )
    expected = done.stdout.decode("utf-8").split("\n")
    actual = [plain_json_encode(json.loads(text), ascii_only=False) for text in texts]
    assert actual == expected
