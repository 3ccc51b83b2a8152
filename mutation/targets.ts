/**
 * The core modules under mutation testing, each with the fast unit-test files that should
 * catch a change to it. A mutant counts as killed only if these tests fail: the integration
 * suite is too slow to run once per mutant, and a unit test that pins the behaviour is the
 * one the next engineer will read.
 */
export interface Target {
  /** Module under test, relative to the repository root. */
  file: string;
  /** ava test files run against every mutant of `file`. */
  tests: string[];
}

export const TARGETS: Target[] = [
  { file: 'hub/state.ts', tests: ['test/state.test.ts'] },
  { file: 'hub/history.ts', tests: ['test/history.test.ts'] },
  { file: 'hub/catchup.ts', tests: ['test/catchup.test.ts'] },
  { file: 'shared/protocol.ts', tests: ['test/protocol.test.ts'] },
  { file: 'shared/gojson.ts', tests: ['test/gojson.test.ts'] },
  { file: 'agent/cache.ts', tests: ['test/cache.test.ts'] },
  { file: 'agent/client.ts', tests: ['test/client.test.ts'] },
  { file: 'agent/auth.ts', tests: ['test/auth.test.ts'] },
  { file: 'agent/persist.ts', tests: ['test/persist-unit.test.ts'] },
  { file: 'agent/indexes/index.ts', tests: ['test/indexes.test.ts'] },
  { file: 'agent/indexes/auth-tables.ts', tests: ['test/auth-tables.test.ts'] },
  { file: 'agent/indexes/claims.ts', tests: ['test/claims.test.ts'] },
  { file: 'agent/indexes/container-index.ts', tests: ['test/container-index.test.ts'] },
  { file: 'agent/indexes/keyed-index.ts', tests: ['test/keyed-index.test.ts'] },
  { file: 'agent/indexes/podgroup-index.ts', tests: ['test/podgroup-index.test.ts'] },
  { file: 'agent/indexes/sorted-set.ts', tests: ['test/sorted-set.test.ts'] },
];
