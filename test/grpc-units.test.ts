// The gRPC mirror's pure parts: the caller's IP from grpc-js's peer string, the status for each
// error text, and the message shapes' robustness against a view's unexpected nulls.
import test from 'ava';
import { status } from '@grpc/grpc-js';
import { SHAPES } from '../agent/grpc/shapes.js';
import { SERVICES, errorOf, peerIp } from '../agent/grpc/services.js';

test('the caller\'s IP: the port dropped, IPv4-mapped IPv6 and brackets normalised', (t) => {
  t.is(peerIp('127.0.0.1:50000'), '127.0.0.1');
  t.is(peerIp('::ffff:172.20.0.11:50000'), '172.20.0.11');
  t.is(peerIp('::1:50000'), '::1');
  t.is(peerIp('[::1]:50000'), '::1');
  t.is(peerIp('unknown'), 'unknown');
});

test('error answers keep their text and get the code that says what happened', (t) => {
  const cases: Array<[number, string, status]> = [
    [400, 'authorize failed, super required', status.PERMISSION_DENIED],
    [400, 'authorize failed, no permission', status.PERMISSION_DENIED],
    [400, 'authorize failed, can not confirm the app by request ip', status.PERMISSION_DENIED],
    [400, 'appname required', status.INVALID_ARGUMENT],
    [500, 'empty key', status.INVALID_ARGUMENT],
    [500, 'unkown address 10.0.0.1', status.NOT_FOUND],
    [500, 'over half of the containers lost their IPs', status.FAILED_PRECONDITION],
    [503, 'lainlet agent not synced yet', status.UNAVAILABLE],
    [500, 'internal error in /v2/nodes: boom', status.INTERNAL],
  ];
  for (const [code, body, want] of cases) t.deepEqual(errorOf({ status: code, body }), { code: want, details: body }, body);
});

test('every data service has a shape, and a shape given nulls or wrong types gives an empty message, never throws', (t) => {
  for (const spec of SERVICES) {
    const shape = SHAPES[spec.path];
    t.is(typeof shape, 'function', spec.name);
    for (const body of [null, 1, 'x', [], {}, [null], { a: null }, { a: [null] }, { a: { b: null } }]) {
      t.notThrows(() => shape(body), `${spec.name} ${JSON.stringify(body)}`);
    }
    // (Appname's view always names an app: its one map entry is there even when empty.)
    if (spec.name !== 'Appname') t.deepEqual(shape(null), {}, `${spec.name}: nothing → the empty message`);
  }
});
