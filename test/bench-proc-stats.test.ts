// bench/lib/proc-stats.ts: the memory split the agent's memory verdict stands on.
import test from 'ava';
import { parseSmapsRollup, readMemoryMap } from '../bench/lib/proc-stats.js';

test('smaps_rollup splits RSS into pages mapped from files and anonymous memory', (t) => {
  const text = [
    '55d0c0a00000-7ffc6b7f1000 ---p 00000000 00:00 0                          [rollup]',
    'Rss:               40516 kB',
    'Pss:               38000 kB',
    'Shared_Clean:       2596 kB',
    'Private_Clean:     31576 kB',
    'Private_Dirty:      6344 kB',
    'Anonymous:          6344 kB',
    'AnonHugePages:         0 kB',
  ].join('\n');
  t.deepEqual(parseSmapsRollup(text), { rss: 40516 * 1024, anonymous: 6344 * 1024, fromFiles: (40516 - 6344) * 1024 });
  // AnonHugePages must not be read as Anonymous.
  t.is(parseSmapsRollup(text.replace('Anonymous:          6344', 'Anonymous:          1000')).anonymous, 1000 * 1024);
});

test('this process: both parts are there and add up to its RSS', (t) => {
  const m = readMemoryMap(process.pid);
  t.true(m.anonymous > 0 && m.fromFiles > 0, JSON.stringify(m));
  t.is(m.anonymous + m.fromFiles, m.rss);
});
