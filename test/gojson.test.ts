// Go encoding/json byte compatibility (API.md §6). Expected strings are Go's json.Marshal output.
import test from 'ava';
import { compareUtf8, encodeGeneric, encodeNumber, encodeString, encodeStringsOrNull } from '../shared/gojson.js';

test('plain strings take the fast path unchanged', (t) => {
  t.is(encodeString(''), '""');
  t.is(encodeString('hello.web.web'), '"hello.web.web"');
  t.is(encodeString('中文 é DEL\u007f'), '"中文 é DEL\u007f"');
});

test('HTML characters are escaped as Go does', (t) => {
  t.is(encodeString('<b>bold</b> & "quoted" \'single\''), '"\\u003cb\\u003ebold\\u003c/b\\u003e \\u0026 \\"quoted\\" \'single\'"');
});

test('U+2028 and U+2029 are escaped', (t) => {
  t.is(encodeString('a\u2028b\u2029c'), '"a\\u2028b\\u2029c"');
});

test('control characters: \\n \\r \\t short, everything else \\u00XX in lower-case hex', (t) => {
  t.is(encodeString('\n\r\t'), '"\\n\\r\\t"');
  t.is(encodeString('\b\f'), '"\\u0008\\u000c"');
  t.is(encodeString('\u0000\u001b\u001f'), '"\\u0000\\u001b\\u001f"');
});

test('an escaped backslash followed by b or f is not mistaken for \\b or \\f', (t) => {
  t.is(encodeString('C:\\bin\\fonts'), '"C:\\\\bin\\\\fonts"');
  t.is(encodeString('\\\b'), '"\\\\\\u0008"');
  t.is(encodeString('\\<'), '"\\\\\\u003c"');
});

test('lone surrogates become U+FFFD; pairs stay raw', (t) => {
  t.is(encodeString('a\ud800b'), '"a\ufffdb"');
  t.is(encodeString('\udc00'), '"\ufffd"');
  t.is(encodeString('🚀 <'), '"🚀 \\u003c"');
});

test('numbers are written as Go writes float64: 1e+21, 1e-7, -0', (t) => {
  t.is(encodeNumber(22), '22');
  t.is(encodeNumber(16658804736), '16658804736');
  t.is(encodeNumber(1e21), '1e+21');
  t.is(encodeNumber(1e20), '100000000000000000000');
  t.is(encodeNumber(0.0000001), '1e-7');
  t.is(encodeNumber(0.000001), '0.000001');
  t.is(encodeNumber(-0), '-0');
  t.is(encodeNumber(0), '0');
  t.is(encodeNumber(-1.5), '-1.5');
  t.throws(() => encodeNumber(Infinity));
});

test('compareUtf8 orders by code point: astral characters after U+E000-U+FFFF', (t) => {
  const astral = '\u{1F680}'; // surrogate pair D83D DE80
  const privateUse = '\uE000';
  const fffd = '\uFFFD';
  t.true(astral < privateUse, 'JS default order differs');
  t.true(compareUtf8(astral, privateUse) > 0);
  t.true(compareUtf8(astral, fffd) > 0);
  t.true(compareUtf8(privateUse, astral) < 0);
  t.deepEqual([astral, fffd, 'z', privateUse, 'a', '\uD7FF'].sort(compareUtf8), ['a', 'z', '\uD7FF', privateUse, fffd, astral]);
  t.is(compareUtf8('abc', 'abc'), 0);
  t.true(compareUtf8('ab', 'abc') < 0);
  t.true(compareUtf8('hello-world/x', 'hello/x') < 0);
  t.true(compareUtf8('\u{10000}', '\u{10001}') < 0);
});

test('encodeGeneric writes objects as Go maps: keys sorted byte-wise', (t) => {
  t.is(encodeGeneric({ '\u{1F680}': 1, '\uE000': 2, b: 3, a: 4 }), '{"a":4,"b":3,"\uE000":2,"\u{1F680}":1}');
  t.is(encodeGeneric({}), '{}');
});

test('encodeGeneric re-encodes arbitrary JSON like Go re-encodes interface{}', (t) => {
  const node8: unknown = JSON.parse('{"name": "node8", "huge": 1e21, "tiny": 0.0000001, "neg": -0.0, "labels": {"zone": "b", "disk": "ssd"}, "cpus": [0, 1], "ok": true, "nothing": null, "html": "<a&b>"}');
  t.is(encodeGeneric(node8),
    '{"cpus":[0,1],"html":"\\u003ca\\u0026b\\u003e","huge":1e+21,"labels":{"disk":"ssd","zone":"b"},"name":"node8","neg":-0,"nothing":null,"ok":true,"tiny":1e-7}');
});

test('string slices keep nil as null', (t) => {
  t.is(encodeStringsOrNull(null), 'null');
  t.is(encodeStringsOrNull([]), '[]');
  t.is(encodeStringsOrNull(['a<', 'b']), '["a\\u003c","b"]');
});

test('each character Go treats specially leaves the fast path on its own', (t) => {
  const alone: Array<[string, string]> = [
    ['"', '\\"'], ['\\', '\\\\'], ['<', '\\u003c'], ['>', '\\u003e'], ['&', '\\u0026'],
    ['\u2028', '\\u2028'], ['\u2029', '\\u2029'], ['\u0000', '\\u0000'], ['\u001f', '\\u001f'],
    ['\b', '\\u0008'], ['\f', '\\u000c'], ['\n', '\\n'], ['\ud800', '\ufffd'], ['\udfff', '\ufffd'],
  ];
  for (const [char, escaped] of alone) t.is(encodeString(`x${char}y`), `"x${escaped}y"`, JSON.stringify(char));
  // Just outside the special ranges: written as they are.
  for (const char of [' ', '\u007f', '\u2027', '\u202a', '\ud7ff', '\ue000', '=', '?', '%']) t.is(encodeString(`x${char}y`), `"x${char}y"`, JSON.stringify(char));
});

test('non-finite numbers are refused, naming the number', (t) => {
  t.throws(() => encodeNumber(NaN), { instanceOf: RangeError, message: 'cannot encode NaN as JSON' });
  t.throws(() => encodeNumber(-Infinity), { instanceOf: RangeError, message: 'cannot encode -Infinity as JSON' });
});

test('compareUtf8: a prefix sorts first, from either side; surrogates at the range edges', (t) => {
  t.true(compareUtf8('abc', 'ab') > 0);
  t.true(compareUtf8('ab', 'abc') < 0);
  t.true(compareUtf8('', 'a') < 0);
  t.true(compareUtf8('b', 'ab') > 0);
  t.true(compareUtf8('ab', 'b') < 0);
  // U+10000 is D800 DC00: the lowest surrogate still sorts above U+E000-U+FFFF.
  t.true(compareUtf8('\u{10000}', '\uE000') > 0);
  t.true(compareUtf8('\uE000', '\u{10000}') < 0);
  t.true(compareUtf8('\u{10000}', '\uFFFF') > 0);
  t.true(compareUtf8('\uFFFF', '\u{10000}') < 0);
  t.true(compareUtf8('\uD7FF', '\uE000') < 0);
  t.true(compareUtf8('\uE000', '\uD7FF') > 0);
  t.true(compareUtf8('\uD7FF', '\u{10000}') < 0);
  t.true(compareUtf8('\u{10000}', '\uD7FF') > 0);
  t.true(compareUtf8('\uE000', '\uFFFF') < 0);
  t.true(compareUtf8('\uFFFF', '\uE000') > 0);
});

test('encodeGeneric writes JSON scalars as Go does and refuses what JSON has no form for', (t) => {
  t.is(encodeGeneric(true), 'true');
  t.is(encodeGeneric(false), 'false');
  t.is(encodeGeneric(null), 'null');
  t.is(encodeGeneric('<'), '"\\u003c"');
  t.is(encodeGeneric(-0), '-0');
  t.is(encodeGeneric([]), '[]');
  t.is(encodeGeneric([[1, 2], [], [{ b: null, a: [true] }]]), '[[1,2],[],[{"a":[true],"b":null}]]');
  t.throws(() => encodeGeneric(undefined), { instanceOf: TypeError, message: 'cannot encode a undefined as JSON' });
  t.throws(() => encodeGeneric(() => 1), { instanceOf: TypeError, message: 'cannot encode a function as JSON' });
  t.throws(() => encodeGeneric(1n), { instanceOf: TypeError });
});
