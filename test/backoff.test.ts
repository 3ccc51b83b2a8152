import test from 'ava';
import { Backoff } from '../shared/backoff.js';

test('full jitter: each delay is uniform in [0, min(cap, base·2^attempt)]', (t) => {
  const ceilings: number[] = [];
  const b = new Backoff(200, 30_000, () => 1); // the top of each range
  for (let i = 0; i < 12; i++) ceilings.push(b.next());
  t.deepEqual(ceilings, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000, 30000]);
  const low = new Backoff(200, 30_000, () => 0);
  t.is(low.next(), 0);
});

test('delays spread out: a thousand agents do not come back at the same instant', (t) => {
  const delays = Array.from({ length: 1000 }, () => { const b = new Backoff(200, 30_000); b.next(); b.next(); return b.next(); });
  const buckets = new Set(delays.map((d) => Math.floor(d / 80)));
  t.true(buckets.size >= 9, 'delays cover the whole 0–800 ms range');
  t.true(delays.every((d) => d >= 0 && d <= 800));
});

test('reset starts over after a successful connection', (t) => {
  const b = new Backoff(200, 30_000, () => 1);
  b.next(); b.next(); b.next();
  b.reset();
  t.is(b.next(), 200);
});
