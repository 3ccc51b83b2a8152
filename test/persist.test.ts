// The agent's state file (agent/persist.ts) in a running agent: a failed save on a really full
// filesystem shows in /debug, the log and /metrics; a damaged file is not served; a standalone
// agent process on a real etcd keeps its file following the state and writes the last revision
// at SIGTERM. The persister's own unit tests are in test/persist-unit.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../agent/agent.js';
import { decodeState, encodeState } from '../agent/persist.js';
import type { Logger } from '../shared/log.js';
import { currentRevision, etcdClient, putAll, startEtcd } from '../testkit/etcd.js';
import { httpGet } from '../testkit/http.js';
import { freePort, freePorts } from '../testkit/ports.js';
import { startAgent as startAgentProc, waitFor } from '../testkit/procs.js';
import { agentSynced, fixtureKvs } from './helpers/cluster.js';

import { capturingLogger, configEntries, fileState, persisterIn, tempDir } from './helpers/persist.js';

interface DebugView { revision: number; hasState: boolean; source: string; stateFile: { path: string; lastSavedAt: number | null; lastError: string; errors: number } }
async function debugOf(base: string): Promise<DebugView> {
  return JSON.parse((await httpGet(`${base}/debug`)).body) as DebugView;
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} missing`);
  return Number(m[1]);
}

/** An in-process agent whose only hub is a closed port: its state is what the test puts in its cache or state dir. */
async function agentWithoutHub(stateDir: string, log: Logger): Promise<{ agent: Agent; base: string }> {
  const deadHub = await freePort();
  const agent = await startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: 'node1', noauth: false, hubs: [`ws://127.0.0.1:${deadHub}`], stateDir }, log);
  return { agent, base: `http://127.0.0.1:${agent.port}` };
}

test.serial('on a nearly full filesystem a failed save keeps the old file and shows in /debug, the log and /metrics', async (t) => {
  t.timeout(60_000);
  // A real short write: tmpfs of 64 KB holding a ~20 KB state file, then a ~60 KB state.
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const { log, lines } = capturingLogger();
  const { agent, base } = await agentWithoutHub(dir, log);
  try {
    const saveAttempted = async (since: { lastSavedAt: number | null; errors: number }) => {
      await waitFor(async () => {
        const { stateFile } = await debugOf(base);
        return stateFile.lastSavedAt !== since.lastSavedAt || (stateFile.errors ?? 0) !== since.errors;
      }, { timeoutMs: 10_000, message: 'a save attempt' });
      return (await debugOf(base)).stateFile;
    };
    agent.cache.replace(10, configEntries(330, 40), 'hub');
    const first = await saveAttempted({ lastSavedAt: null, errors: 0 });
    t.is(first.lastError, '');
    const good = readFileSync(join(dir, 'state.bin'));
    t.is(decodeState(good).rev, 10);

    agent.cache.replace(11, configEntries(1000, 40, 'w'), 'hub');
    const failed = await saveAttempted(first);
    t.regex(failed.lastError, /ENOSPC|short write/);
    t.is(failed.errors, 1);
    t.true(readFileSync(join(dir, 'state.bin')).equals(good), 'the good file is still there, whole');
    t.deepEqual(readdirSync(dir), ['state.bin'], 'the temp file is removed');
    t.true(lines.some((l) => l.msg === 'cannot write state file'));
    t.is(metricValue((await httpGet(`${base}/metrics`)).body, 'lainlet_agent_state_file_errors_total'), 1);
    const { persister } = persisterIn(dir);
    t.deepEqual(persister.load()?.entries, configEntries(330, 40), 'a restart would load the last good state');

    // Once it fits again, saving resumes and the error clears; the counter keeps the history.
    agent.cache.replace(12, configEntries(100, 40, 'x'), 'hub');
    const recovered = await saveAttempted(failed);
    t.is(recovered.lastError, '');
    t.is(decodeState(readFileSync(join(dir, 'state.bin'))).rev, 12);
    t.is(metricValue((await httpGet(`${base}/metrics`)).body, 'lainlet_agent_state_file_errors_total'), 1);
  } finally {
    await agent.stop();
  }
});

test('an agent does not serve a state file with a flipped byte', async (t) => {
  const whole = encodeState({ rev: 5, savedAt: Date.now(), entries: [['/lain/config/domain', 'lain.local']] });
  for (const damage of [false, true]) {
    const dir = tempDir(t);
    const bytes = Buffer.from(whole);
    if (damage) bytes[bytes.length - 3] ^= 0x04; // inside "lain.local": still valid msgpack, a different value
    writeFileSync(join(dir, 'state.bin'), bytes);
    const { log, lines } = capturingLogger();
    const { agent, base } = await agentWithoutHub(dir, log);
    try {
      const res = await httpGet(`${base}/v2/configwatcher?target=domain`);
      if (damage) {
        t.is(res.status, 503);
        t.false((await debugOf(base)).hasState);
        t.true(lines.some((l) => l.msg === 'state file is corrupt; ignoring it'));
      } else {
        t.is(res.body, '{"domain":"lain.local"}', 'the same file undamaged is served');
      }
    } finally {
      await agent.stop();
    }
  }
});

// ---------------------------------------------------------------------------
// The whole agent: standalone on a real etcd
// ---------------------------------------------------------------------------

test.serial('standalone with -state-dir: the file follows every write after the first save, long values included, and SIGTERM writes the last revision', async (t) => {
  t.timeout(90_000);
  const etcd = await startEtcd();
  const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-state-'));
  const web = (await freePorts(1))[0];
  const client = etcdClient(etcd);
  // The fixture's pod groups are long JSON values: the state holds strings over 64 characters from the first save.
  const seeded = await putAll(client, fixtureKvs('cluster-small'));
  const agent = startAgentProc(['-web', `127.0.0.1:${web}`, '-etcd', etcd.endpoint, '-ip', '127.0.0.1', '-hostname', 'node1', '-state-dir', stateDir]);
  try {
    const base = `http://127.0.0.1:${web}`;
    const statePath = join(stateDir, 'state.bin');
    const fileRev = () => (existsSync(statePath) ? fileState(statePath).rev : -1);
    const fileFollows = async (rev: number, what: string) => {
      await waitFor(() => fileRev() === rev, { timeoutMs: 15_000, message: `state file at revision ${rev} (${what}); file at ${fileRev()}\n${agent.output()}` });
    };
    await waitFor(() => agentSynced(base), { timeoutMs: 15_000, message: `standalone agent syncs\n${agent.output()}` });
    await fileFollows(seeded, 'first save');

    const r1 = Number((await client.put('/lain/config/persist-short').value('a')).header.revision);
    await fileFollows(r1, 'a short value after the first save');

    const long = 'L'.repeat(100);
    const r2 = Number((await client.put('/lain/config/persist-long').value(long)).header.revision);
    await waitFor(async () => (await httpGet(`${base}/v2/configwatcher?target=persist-long`)).body === JSON.stringify({ 'persist-long': long }),
      { timeoutMs: 10_000, message: `the 100-character value is served\n${agent.output()}` });
    await fileFollows(r2, 'a 100-character value');
    t.is(agent.proc.exitCode, null, 'the agent is still running');
    t.is((await debugOf(base)).stateFile.lastError, '');

    // The last write reaches the agent and the agent is stopped at once: the save at SIGTERM must hold it.
    const r3 = Number((await client.put('/lain/config/persist-last').value('M'.repeat(100))).header.revision);
    await waitFor(async () => (await debugOf(base)).revision >= r3, { timeoutMs: 10_000, message: 'the last write reaches the agent' });
    t.is(await agent.stop('SIGTERM'), 0, 'exits cleanly on SIGTERM');
    const last = fileState(statePath);
    t.is(last.rev, await currentRevision(client));
    t.is(new Map(last.entries).get('/lain/config/persist-last'), 'M'.repeat(100));
    t.is(new Map(last.entries).get('/lain/config/persist-long'), long);
    t.deepEqual(readdirSync(stateDir), ['state.bin']);
  } finally {
    client.close();
    await agent.kill();
    await etcd.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});
