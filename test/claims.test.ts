// Claims (agent/indexes/claims.ts): several owners claim one item; each claim is kept until its
// owner lets go, and the claim served is decided by owner key order, never by write order.
import test from 'ava';
import { Claims } from '../agent/indexes/claims.js';

test('last and first pick by owner key order (byte-wise), whatever the claim order', (t) => {
  const orders = [['b', 'a', '\u{1F680}', '\uE000'], ['\uE000', '\u{1F680}', 'a', 'b'], ['a', '\u{1F680}', 'b', '\uE000']];
  for (const order of orders) {
    const claims = new Claims<string>();
    for (const owner of order) claims.claim('ip', owner, `by ${owner}`);
    t.is(claims.last('ip'), 'by \u{1F680}', order.join(' '));
    t.is(claims.first('ip'), 'by a', order.join(' '));
  }
});

test('an item nobody claims has no claim', (t) => {
  const claims = new Claims<string>();
  t.is(claims.last('ip'), undefined);
  t.is(claims.first('ip'), undefined);
  t.is(claims.all('ip'), undefined);
  t.is(claims.size, 0);
});

test('when one owner lets go the other claims stay', (t) => {
  const claims = new Claims<string>();
  claims.claim('ip', 'a', 'by a');
  claims.claim('ip', 'b', 'by b');
  claims.claim('ip', 'c', 'by c');
  claims.release('ip', 'c');
  t.is(claims.last('ip'), 'by b');
  claims.release('ip', 'a');
  t.is(claims.first('ip'), 'by b');
  t.deepEqual([...claims.all('ip')!], ['by b']);
  t.is(claims.size, 1);
  claims.release('ip', 'b');
  t.is(claims.last('ip'), undefined);
  t.is(claims.all('ip'), undefined);
  t.is(claims.size, 0);
});

test('releasing what was never claimed changes nothing', (t) => {
  const claims = new Claims<string>();
  t.notThrows(() => claims.release('ip', 'a'));
  claims.claim('ip', 'a', 'by a');
  claims.release('ip', 'b');
  claims.release('other', 'a');
  t.is(claims.last('ip'), 'by a');
  t.is(claims.size, 1);
});

test('an owner claiming again replaces its own claim; size counts items, not claims', (t) => {
  const claims = new Claims<string>();
  claims.claim('ip1', 'a', 'old');
  claims.claim('ip1', 'a', 'new');
  claims.claim('ip1', 'b', 'by b');
  claims.claim('ip2', 'a', 'ip2 by a');
  t.deepEqual([...claims.all('ip1')!].sort(), ['by b', 'new']);
  t.is(claims.first('ip1'), 'new');
  t.is(claims.last('ip2'), 'ip2 by a');
  t.is(claims.size, 2);
});
