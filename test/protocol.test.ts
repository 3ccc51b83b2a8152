import test from 'ava';
import { decodeFrame, encodeFrame, keyRangeFilter, ProtocolError, type Frame } from '../shared/protocol.js';
import { pack, Unpackr } from 'msgpackr';

/**
 * A strict decoder of core msgpack (nil, booleans, integers, floats, strings, arrays, maps) that
 * rejects every extension type: what a msgpack implementation other than msgpackr could read.
 */
function decodePlainMsgpack(bytes: Buffer): unknown {
  let at = 0;
  const str = (n: number) => { const s = bytes.toString('utf8', at, at + n); at += n; return s; };
  const many = (n: number, map: boolean): unknown => {
    if (!map) return Array.from({ length: n }, () => value());
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) { const k = value(); if (typeof k !== 'string') throw new Error('map key is not a string'); out[k] = value(); }
    return out;
  };
  const value = (): unknown => {
    const b = bytes[at++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0x80 && b <= 0x8f) return many(b & 0x0f, true);
    if (b >= 0x90 && b <= 0x9f) return many(b & 0x0f, false);
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
    const read = (n: number, f: (o: number) => number | bigint) => { const v = f(at); at += n; return Number(v); };
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xca: return read(4, (o) => bytes.readFloatBE(o));
      case 0xcb: return read(8, (o) => bytes.readDoubleBE(o));
      case 0xcc: return read(1, (o) => bytes.readUInt8(o));
      case 0xcd: return read(2, (o) => bytes.readUInt16BE(o));
      case 0xce: return read(4, (o) => bytes.readUInt32BE(o));
      case 0xcf: return read(8, (o) => bytes.readBigUInt64BE(o));
      case 0xd0: return read(1, (o) => bytes.readInt8(o));
      case 0xd1: return read(2, (o) => bytes.readInt16BE(o));
      case 0xd2: return read(4, (o) => bytes.readInt32BE(o));
      case 0xd3: return read(8, (o) => bytes.readBigInt64BE(o));
      case 0xd9: return str(read(1, (o) => bytes.readUInt8(o)));
      case 0xda: return str(read(2, (o) => bytes.readUInt16BE(o)));
      case 0xdb: return str(read(4, (o) => bytes.readUInt32BE(o)));
      case 0xdc: return many(read(2, (o) => bytes.readUInt16BE(o)), false);
      case 0xdd: return many(read(4, (o) => bytes.readUInt32BE(o)), false);
      case 0xde: return many(read(2, (o) => bytes.readUInt16BE(o)), true);
      case 0xdf: return many(read(4, (o) => bytes.readUInt32BE(o)), true);
      default: throw new Error(`not core msgpack: byte 0x${b.toString(16)} at ${at - 1}`);
    }
  };
  const out = value();
  if (at !== bytes.length) throw new Error(`${bytes.length - at} bytes after the value`);
  return out;
}

const frames: Frame[] = [
  { t: 'hello', v: 1, node: 'node1', rev: 42 },
  { t: 'snap', rev: 7, part: 0, last: true, puts: [['/lain/config/domain', 'lain.local'], ['/lain/config/ünï', '漢字 \u2028']], stale: false },
  { t: 'delta', prev: 7, rev: 9, puts: [['/lain/config/a', '1']], dels: ['/lain/config/b'] },
  { t: 'snap', rev: 7, part: 2, last: false, puts: [], stale: true, epoch: 'cluster-1', reset: true },
  { t: 'hello', v: 1, node: 'node1', rev: 0, epoch: 'cluster-1' },
  { t: 'prog', rev: 12, stale: true },
  { t: 'prog', rev: 12, stale: false, pi: 5000, epoch: 'cluster-1' },
  { t: 'move', afterMs: 1500, reason: 'hub shutting down' },
  { t: 'err', code: 'bad_version', msg: 'nope' },
];

for (const frame of frames) {
  test(`round trip: ${frame.t} ${Object.keys(frame).join(',')}`, (t) => {
    t.deepEqual(decodeFrame(encodeFrame(frame)), frame);
  });
  test(`plain msgpack, readable without any connection state: ${frame.t} ${Object.keys(frame).join(',')}`, (t) => {
    // Encode-once: the same bytes go to every agent, so a fresh decoder that saw none of the
    // frames before must read even the second frame of a shape; and only core msgpack types,
    // no msgpackr extensions (records, bundled strings), so any msgpack library reads them.
    encodeFrame(frame);
    const bytes = encodeFrame(frame);
    t.deepEqual(new Unpackr({ mapsAsObjects: true }).unpack(bytes), frame);
    t.deepEqual(decodePlainMsgpack(bytes), frame);
  });
}

test('a frame encodes to the same bytes every time (encode once, send to all)', (t) => {
  const f: Frame = { t: 'delta', prev: 1, rev: 2, puts: [['k', 'v']], dels: [] };
  t.true(encodeFrame(f).equals(encodeFrame(structuredClone(f))));
});

test('garbage, unknown types and malformed frames are protocol errors', (t) => {
  t.throws(() => decodeFrame(Buffer.from([0xc1, 0xff, 0x00])), { instanceOf: ProtocolError });
  t.throws(() => decodeFrame(pack([1, 2, 3])), { instanceOf: ProtocolError, message: /not a map/ });
  t.throws(() => decodeFrame(pack({ t: 'bogus' })), { instanceOf: ProtocolError, message: /unknown frame type/ });
  t.throws(() => decodeFrame(pack({ t: 'delta', prev: 1, rev: 2, puts: [['k', 3]], dels: [] })), { instanceOf: ProtocolError, message: /malformed delta/ });
  t.throws(() => decodeFrame(pack({ t: 'hello', v: 1, node: 'n', rev: -1 })), { instanceOf: ProtocolError });
});

test('only the key ranges the API reads are kept', (t) => {
  const keep = keyRangeFilter('/lain/');
  t.true(keep('/lain/config/domain'));
  t.true(keep('/lain/deployd/pod_groups/hello/hello.web.web'));
  t.true(keep('/lain/deployd/depends/pods/redis-service.portal.portal-redis'));
  t.true(keep('/lain/nodes/nodes/node1:192.168.77.21:22'));
  t.false(keep('/lain/deployd/depends/specs/redis-service.portal.portal-redis'));
  t.false(keep('/lain/nodes/etcd-members/node1:192.168.77.21:22'));
  t.false(keep('/lain/configx'));
});

test('an encoded frame owns its bytes: encoding another frame does not change it', (t) => {
  const f: Frame = { t: 'delta', prev: 1, rev: 2, puts: [['k', 'v']], dels: [] };
  const bytes = encodeFrame(f);
  const copy = Buffer.from(bytes);
  encodeFrame({ t: 'delta', prev: 3, rev: 4, puts: [['other', 'value']], dels: ['x'] });
  t.true(bytes.equals(copy));
});

test('undecodable bytes and non-maps are bad_frame errors that say so', (t) => {
  const undecodable = t.throws(() => decodeFrame(Buffer.from([0x92, 0x01])), { instanceOf: ProtocolError }); // an array of two, cut after one
  t.is(undecodable.code, 'bad_frame');
  t.regex(undecodable.message, /^undecodable msgpack frame: \S/, 'says what msgpackr found');
  for (const value of [null, 5, 'hello', true, [1, 2]]) {
    const err = t.throws(() => decodeFrame(pack(value)), { instanceOf: ProtocolError, message: 'frame is not a map' }, JSON.stringify(value));
    t.is(err.code, 'bad_frame');
  }
  const unknown = t.throws(() => decodeFrame(pack({ t: 'bogus' })), { instanceOf: ProtocolError, message: 'unknown frame type "bogus"' });
  t.is(unknown.code, 'bad_frame');
  t.throws(() => decodeFrame(pack({ rev: 1 })), { instanceOf: ProtocolError, message: 'unknown frame type undefined' });
});

// Each valid frame with one field made wrong: every one is rejected as malformed.
const malformed: Array<[string, Record<string, unknown>]> = [];
const valid: Record<string, Record<string, unknown>> = {
  hello: { t: 'hello', v: 1, node: 'n', rev: 3, epoch: 'e' },
  snap: { t: 'snap', rev: 3, part: 0, last: true, puts: [['k', 'v']], stale: false, epoch: 'e', reset: true },
  delta: { t: 'delta', prev: 2, rev: 3, puts: [['k', 'v']], dels: ['d'] },
  prog: { t: 'prog', rev: 3, stale: false, pi: 1000, epoch: 'e' },
  move: { t: 'move', afterMs: 10, reason: 'r' },
  err: { t: 'err', code: 'c', msg: 'm' },
};
const badValues: Record<string, unknown[]> = {
  v: ['1', undefined], node: [1, undefined], epoch: [1, true], afterMs: ['10', undefined], code: [1, undefined], msg: [1, undefined],
  rev: ['3', -1, 1.5, 2 ** 53, undefined], prev: ['2', -1, 0.5, undefined], part: ['0', undefined], last: [1, undefined],
  reset: ['yes', 1], pi: ['1000', true],
  puts: [undefined, 'k', [['k']], [['k', 'v', 'w']], [['k', 1]], [[1, 'v']], ['kv'], [['k', 'v'], 'x']],
  dels: [undefined, 'd', [1], ['d', null]],
  // Not validated by decodeFrame today (a missing flag reads as not stale, a missing reason is
  // only logged): listed so that the table covers every field, with no bad values to try.
  stale: [], reason: [],
};
for (const [type, frame] of Object.entries(valid)) {
  for (const field of Object.keys(frame)) {
    if (field === 't') continue;
    for (const bad of badValues[field]) malformed.push([`${type}.${field} = ${JSON.stringify(bad) ?? 'absent'}`, { ...frame, [field]: bad }]);
  }
}

test('a frame with any field of the wrong type or shape is a malformed frame of its type', (t) => {
  for (const [name, frame] of malformed) {
    const err = t.throws(() => decodeFrame(pack(frame)), { instanceOf: ProtocolError, message: `malformed ${String(frame.t)} frame` }, name);
    t.is(err?.code, 'bad_frame', name);
  }
});

test('the frames those were made from are valid, with or without their optional fields', (t) => {
  for (const frame of Object.values(valid)) t.deepEqual(decodeFrame(pack(frame)), frame);
  t.notThrows(() => decodeFrame(pack({ t: 'hello', v: 1, node: 'n', rev: 0 })));
  t.notThrows(() => decodeFrame(pack({ t: 'snap', rev: 0, part: 0, last: false, puts: [], stale: true, epoch: null, reset: null })));
  t.notThrows(() => decodeFrame(pack({ t: 'prog', rev: 2 ** 53 - 1, stale: true, pi: null, epoch: null })));
  t.notThrows(() => decodeFrame(pack({ t: 'delta', prev: 0, rev: 1, puts: [], dels: [] })));
});

test('the key filter accepts a prefix with or without its trailing slash', (t) => {
  const keep = keyRangeFilter('/lain');
  t.true(keep('/lain/config/domain'));
  t.true(keep('/lain/nodes/nodes/node1'));
  t.false(keep('/lainconfig/domain'));
  t.false(keep('/lain/'));
  const other = keyRangeFilter('/other/');
  t.false(other('/lain/config/domain'));
  t.true(other('/other/deployd/depends/pods/x'));
});
