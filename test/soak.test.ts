// The seeded chaos soak (test/soak/) as part of `npm test`: 30 seconds with a fixed seed.
// A failure lists the checker's findings; the verdict line says how to replay the run
// (`npm run soak -- --seconds 30 --seed <seed>`), and `npm run soak` runs longer ones.
import test from 'ava';
import { FAULT_WEIGHTS } from './soak/faults.js';
import { runSoak } from './soak/run.js';

// 426 is a seed whose 30 s plan has every fault kind (424242's 60 s plan had no hub-term,
// etcd-link-throttle or etcd-restart); the verdict must count each kind at least once.
const SEED = 426;
const SECONDS = 30;

test('soak: 30 s of seeded faults (kills, pauses, restarts, partitions, byte-budget cuts, compaction, etcd restarts) — every agent ends at etcd\'s state, no revision or stream goes backwards, no 503 with state', async (t) => {
  // Setup, the run, up to 30 s of convergence, the reference comparison and teardown.
  t.timeout((SECONDS + 150) * 1000, 'the soak did not finish');
  const result = await runSoak({ seconds: SECONDS, seed: SEED });
  for (const line of result.findings) t.log(line);
  t.log(result.verdict);
  // The findings go in the assertion's message too: a CI record keeps the end of the output
  // (where the failure is reported), not the log lines printed when the test finished — a
  // recorded failure of this test (6 findings at seed 426) lost all of them.
  t.true(result.ok, [result.verdict, ...result.findings.slice(0, 20), ...(result.findings.length > 20 ? [`… and ${result.findings.length - 20} more`] : [])].join('\n'));
  const missing = Object.keys(FAULT_WEIGHTS).filter((kind) => !(result.faults[kind] > 0));
  t.deepEqual(missing, [], `every fault kind ran: ${result.verdict}`);
});
