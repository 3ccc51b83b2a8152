import test from 'ava';
import { decodeFrame, encodeFrame, keyRangeFilter, ProtocolError, type Frame } from '../shared/protocol.js';
import { pack } from 'msgpackr';

const frames: Frame[] = [
  { t: 'hello', v: 1, node: 'node1', rev: 42 },
  { t: 'snap', rev: 7, part: 0, last: true, puts: [['/lain/config/domain', 'lain.local'], ['/lain/config/ünï', '漢字 \u2028']], stale: false },
  { t: 'delta', prev: 7, rev: 9, puts: [['/lain/config/a', '1']], dels: ['/lain/config/b'] },
  { t: 'prog', rev: 12, stale: true },
  { t: 'move', afterMs: 1500, reason: 'hub shutting down' },
  { t: 'err', code: 'bad_version', msg: 'nope' },
];

for (const frame of frames) {
  test(`round trip: ${frame.t}`, (t) => {
    t.deepEqual(decodeFrame(encodeFrame(frame)), frame);
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
