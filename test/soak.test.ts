// The seeded chaos soak (test/soak/) as part of `npm test`: 60 seconds with a fixed seed.
// A failure lists the checker's findings; the verdict line says how to replay the run
// (`npm run soak -- --seconds 60 --seed <seed>`), and `npm run soak` runs longer ones.
import test from 'ava';
import { runSoak } from './soak/run.js';

const SEED = 424242;
const SECONDS = 60;

test('soak: 60 s of seeded faults (kills, pauses, restarts, partitions, byte-budget cuts, compaction, etcd restarts) — every agent ends at etcd\'s state, no revision or stream goes backwards, no 503 with state', async (t) => {
  // Setup, the run, up to 30 s of convergence, the reference comparison and teardown.
  t.timeout((SECONDS + 150) * 1000, 'the soak did not finish');
  const result = await runSoak({ seconds: SECONDS, seed: SEED });
  for (const line of result.findings) t.log(line);
  t.log(result.verdict);
  t.true(result.ok, result.verdict);
});
