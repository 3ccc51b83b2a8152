// ava's configuration for `npm test` (the fast suite: under three minutes on 2 cores) and, by
// ava.long.config.mjs, for `npm run test:long` (the long scenarios). CI runs both (.ci/run).
//
// The long suite is the scenarios whose every run takes tens of seconds of a loaded machine:
// three-member etcd clusters broken a member at a time under writes (issue 15), and the hub
// tier's 300 agents through join / kill / leave (issue 12). What they pin below the process
// level has fast tests here too (Etcd3Store's cursor in test/etcd-faults.test.ts, the stale
// member's answers in test/stale-member.test.ts, balance in test/members.test.ts).
export const LONG = [
  'test/etcd-cluster.test.ts',
  'test/etcd-cluster-isolation.test.ts',
  'test/etcd-cluster-rejoin.test.ts',
  'test/etcd-cluster-v2.test.ts',
  'test/hub-tier.test.ts',
];

export const base = {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  // On Node 20, --import=tsx reaches the tests only in child processes.
  workerThreads: false,
  timeout: '2m',
  // Three files at once on 2 cores: most tests wait on processes, sockets and timers, not the
  // CPU (measured: the fast suite in 124 s at 3, 159 s at 2).
  concurrency: 3,
};

/**
 * The files that take longest, in seconds alone on this machine (ava per file, idle): they
 * start first, while the short ones fill the other slots, so the run does not end waiting on
 * one long file started last (ava's own order is alphabetical: the soak began at 100 s).
 */
const WEIGHT = {
  'test/soak.test.ts': 45,
  'test/etcd-faults.test.ts': 40,
  'test/failover.test.ts': 28,
  'test/hub-hardening.test.ts': 13,
  'test/workers/hub-hardening.test.ts': 13,
  'test/config.test.ts': 8,
  'test/persist.test.ts': 8,
  'test/watch-repair.test.ts': 7,
  'test/workers/watch-repair.test.ts': 7,
  'test/stale-member.test.ts': 7,
  'test/operations.test.ts': 6,
};
const weight = (file) => WEIGHT[Object.keys(WEIGHT).find((k) => file.endsWith(k)) ?? ''] ?? 0;

export default {
  ...base,
  files: ['test/**/*.test.ts', ...LONG.map((f) => `!${f}`)],
  sortTestFiles: (a, b) => weight(b) - weight(a) || (a < b ? -1 : a > b ? 1 : 0),
};
