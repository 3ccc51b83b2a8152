// The seeded chaos soak: a real etcd, three hubs each behind a fault proxy to etcd, five agents
// each reaching every hub through its own fault proxy, event streams open on every agent, one
// writer, and a seeded fault plan. The checker (checker.ts) decides; timers only pace faults.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compact, startEtcd, type EtcdServer } from '../../testkit/etcd.js';
import { startEtcdCluster, type EtcdCluster } from '../../testkit/etcd-cluster.js';
import { httpGet } from '../../testkit/http.js';
import { freePorts } from '../../testkit/ports.js';
import { startAgent, waitFor, type Proc } from '../../testkit/procs.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { AgentRecord, Findings, ServedStateCheck, StreamCheck } from './checker.js';
import { planFaults, runPlan, type Episode, type FaultCounts } from './faults.js';
import { AgentPoller, debugOf, StreamObserver } from './observe.js';
import { bodyFingerprint, diffKeys, KEPT_RANGES, REFERENCE_PATHS, seedState, VIEWS } from './model.js';
import { Rng } from './prng.js';
import { hubHealth, hubHealthy, ManagedProc, tail } from './procs.js';
import { HubTap } from './tap.js';
import { Writer } from './writer.js';

export interface SoakOptions {
  seconds: number;
  seed: number;
  /** How long the agents get to converge once the writer stopped and every fault is healed. */
  convergeMs?: number;
  hubs?: number;
  agents?: number;
  /**
   * etcd members (default 1). With 3 (or 5) the hubs are given every member (hub i reaches
   * member i through its etcd link, the others directly) and the member faults join the plan.
   */
  etcdMembers?: number;
  /** Only these fault kinds (all when absent; [] = a baseline run without faults). */
  kinds?: string[];
  /** Progress lines (episodes as they run); none when absent. */
  log?: (line: string) => void;
}

export interface SoakResult {
  ok: boolean;
  /** The checker's findings, one per line. */
  findings: string[];
  /** The one-line verdict: PASS/FAIL, counts, and the command that replays the run. */
  verdict: string;
  faults: FaultCounts;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: Error) => { clearTimeout(timer); reject(e); });
  });
}

/** State dirs not yet removed: removed when the process exits, whatever the reason. */
const liveDirs = new Set<string>();
process.on('exit', () => { for (const d of liveDirs) try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } });

/** Teardowns of the soaks running in this process, for a Ctrl-C (abortSoaks()). */
const teardowns = new Set<() => Promise<void>>();

/** Stops every process and removes every temp dir of the soaks running now (on SIGINT/SIGTERM). */
export async function abortSoaks(): Promise<void> {
  await Promise.all([...teardowns].map((t) => t().catch(() => {})));
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const { seconds, seed } = opts;
  const nHubs = opts.hubs ?? 3;
  const nAgents = opts.agents ?? 5;
  const convergeMs = opts.convergeMs ?? 30_000;
  const log = opts.log ?? (() => {});
  const findings = new Findings();
  const faults: FaultCounts = {};
  const extra: Record<string, number> = { compactions: 0 };

  const tempDir = mkdtempSync(path.join(os.tmpdir(), 'lainlet-soak-'));
  liveDirs.add(tempDir);
  let etcd: EtcdServer | undefined;
  let cluster: EtcdCluster | undefined;
  const nMembers = opts.etcdMembers ?? 1;
  const proxies: FaultProxy[] = [];
  const procs: ManagedProc[] = [];
  let reference: Proc | undefined;
  let writer: Writer | undefined;
  let ending = false;

  let tornDown: Promise<void> | undefined;
  const teardown = () => (tornDown ??= (async () => {
    ending = true;
    writer?.abort();
    writer?.close();
    await Promise.all([...procs.map(async (p) => { p.cont(); await p.kill(); }), reference?.kill()]);
    for (const p of proxies) await p.close().catch(() => {});
    await (cluster ?? etcd)?.stop().catch(() => {});
    rmSync(tempDir, { recursive: true, force: true });
    liveDirs.delete(tempDir);
  })());
  teardowns.add(teardown);

  const onUnexpectedExit = (name: string, detail: string) => {
    findings.add('crash', name, detail);
    // Keep the soak meaningful: a crashed process comes back (its episodes go on).
    const p = procs.find((x) => x.name === name);
    if (p && !ending) setTimeout(() => { if (!ending && p.state === 'down') p.start(); }, 500);
  };

  try {
    if (nMembers > 1) {
      cluster = await startEtcdCluster({ members: nMembers });
      etcd = cluster.members[0];
    } else {
      etcd = await startEtcd();
    }
    const members: EtcdServer[] = cluster?.members ?? [etcd];
    writer = new Writer(members.map((m) => m.url), new Rng(seed, 2), new Rng(seed, 3));
    const history = await writer.seed(seedState(new Rng(seed, 4)));

    // Hubs, each behind its own link to etcd; different history bounds, so resumes are
    // sometimes deltas and sometimes snapshots.
    const etcdLinks: FaultProxy[] = [];
    const linkedMember = (i: number) => i % members.length;
    for (let i = 0; i < nHubs; i++) etcdLinks.push(await startProxy(Number(members[linkedMember(i)].endpoint.split(':')[1])));
    proxies.push(...etcdLinks);
    const hubPorts = await freePorts(nHubs);
    const hubExtra = [[], ['--history-count', '30'], ['--history-bytes', '300000', '--history-prefill', '100']];
    const hubs = hubPorts.map((port, i) => new ManagedProc(`hub${i}`, 'hub', port, [
      '--etcd', members.map((m, k) => (k === linkedMember(i) ? `127.0.0.1:${etcdLinks[i].port}` : m.endpoint)).join(','), '--listen', `127.0.0.1:${port}`,
      '--progress-interval', '500', '--shutdown-spread', '500', ...(hubExtra[i % hubExtra.length] ?? []),
    ], onUnexpectedExit));
    procs.push(...hubs);
    for (const h of hubs) h.start();
    for (const h of hubs) await waitFor(() => hubHealthy(h.port), { timeoutMs: 20_000, message: `${h.name} healthy:\n${h.output()}` });

    // Agents, each with its own link to every hub and its own state dir. (Their ports are
    // picked once the links listen: a link on port 0 could take a port just released.)
    const hubLinks: FaultProxy[][] = [];
    for (let j = 0; j < nAgents; j++) {
      const links: FaultProxy[] = [];
      for (let i = 0; i < nHubs; i++) links.push(await startProxy(hubPorts[i]));
      hubLinks.push(links);
      proxies.push(...links);
    }
    const agentPorts = await freePorts(nAgents);
    const agents = agentPorts.map((port, j) => new ManagedProc(`agent${j}`, 'agent', port, [
      '-web', `127.0.0.1:${port}`, '-hub', hubLinks[j].map((p) => `ws://127.0.0.1:${p.port}`).join(','),
      '-ip', '127.0.0.1', '-hostname', 'node1', '-state-dir', path.join(tempDir, `agent${j}`),
      '-silence-timeout', '1500', '-reconnect-max', '2000',
    ], onUnexpectedExit));
    procs.push(...agents);
    for (const a of agents) a.start();
    const base = (a: ManagedProc) => `http://127.0.0.1:${a.port}`;
    for (const a of agents) {
      await waitFor(async () => { const d = await debugOf(base(a)); return d.hasState && d.revision >= history.revisions[0]; }, { timeoutMs: 20_000, message: `${a.name} synced:\n${a.output()}` });
    }

    // Observers and the checker.
    const records = agents.map((a) => new AgentRecord(a.name, a));
    // /debug names the hub by the address the agent dialled: its link to that hub.
    const linkNames = new Map<string, string>();
    hubLinks.forEach((links, j) => links.forEach((l, i) => linkNames.set(`ws://127.0.0.1:${l.port}`, `hub${i} (via hub-link${j}.${i})`)));
    for (const r of records) r.hubName = (address) => linkNames.get(address.replace(/\/$/, '')) ?? address;
    const served = new ServedStateCheck(history, findings);
    const streams: StreamObserver[] = [];
    records.forEach((r, j) => VIEWS.forEach((_, v) => streams.push(new StreamObserver(r, base(agents[j]), new StreamCheck(r, v, history, findings), findings))));
    const pollers = records.map((r, j) => new AgentPoller(r, base(agents[j]), served, findings, 150));
    // Per hub: a tap that stays connected (the live delta stream) and one that resumes every
    // couple of seconds from its revision (the hub's answer to a hello at r).
    const taps = hubs.flatMap((h) => [0, 2000].map((hop) => new HubTap(h, history, (i) => history.hashes[i], findings, hop)));
    history.onRecord(() => {
      for (const s of streams) s.check.drain(false);
      served.drain(false);
      for (const t of taps) t.drain(false);
    });
    for (const t of taps) t.start();
    for (const s of streams) s.start();
    for (const p of pollers) p.start();
    await waitFor(() => streams.every((s) => s.check.connected), { timeoutMs: 20_000, message: 'every stream open' });

    // The run: writer and fault plan.
    const plan = planFaults(seed, seconds, { hubs: nHubs, agents: nAgents, etcdMembers: nMembers }).filter((e) => !opts.kinds || opts.kinds.includes(e.kind));
    let writing = true;
    const writerDone = writer.run(() => writing);
    const startedAt = Date.now();
    findings.startedAt = startedAt;
    const deadline = startedAt + seconds * 1000;
    let etcdDown = false;

    const compactNow = async () => {
      if (etcdDown) return;
      try {
        await timeout(compact(members.find((m) => m.proc.running) ?? etcd!), 5000, 'compaction');
        extra.compactions++;
      } catch { /* etcd went away meanwhile */ }
    };
    const link = (target: string): FaultProxy => {
      const m = /^etcd-link(\d+)$/.exec(target);
      if (m) return etcdLinks[Number(m[1])];
      const n = /^hub-link(\d+)\.(\d+)$/.exec(target)!;
      return hubLinks[Number(n[1])][Number(n[2])];
    };
    const proc = (target: string) => procs.find((p) => p.name === target)!;
    const restart = async (p: ManagedProc) => {
      p.start();
      if (p.kind === 'hub') await waitFor(() => hubHealthy(p.port), { timeoutMs: 10_000 }).catch(() => {});
    };

    const at = () => `+${((Date.now() - startedAt) / 1000).toFixed(1)}s`;
    const execute = async (e: Episode): Promise<boolean> => {
      log(`${at()} ${e.kind} ${e.target} ${e.duration}ms ${e.params.join(',')}`);
      try {
        return await executeEpisode(e);
      } finally {
        log(`${at()} ${e.kind} ${e.target} healed`);
      }
    };
    const executeEpisode = async (e: Episode): Promise<boolean> => {
      const d = e.duration;
      switch (e.kind) {
        case 'hub-kill': case 'agent-kill': {
          const p = proc(e.target);
          if (p.state !== 'up') return false;
          await p.kill();
          await sleep(d);
          await restart(p);
          return true;
        }
        case 'hub-term': case 'agent-term': {
          const p = proc(e.target);
          if (p.state !== 'up') return false;
          const problem = await p.term();
          if (problem) findings.add('unclean-exit', p.name, problem);
          await sleep(d);
          await restart(p);
          return true;
        }
        case 'hub-stop': case 'agent-stop': {
          const p = proc(e.target);
          if (p.state !== 'up') return false;
          p.stop();
          await sleep(d);
          p.cont();
          return true;
        }
        case 'etcd-link-cut': case 'hub-link-cut': {
          const p = link(e.target);
          await p.cut();
          await sleep(d);
          await p.restore();
          return true;
        }
        case 'etcd-link-refuse': case 'hub-link-refuse': {
          const p = link(e.target);
          p.refuse();
          p.drop();
          await sleep(d);
          await p.restore();
          return true;
        }
        case 'etcd-link-budget': case 'hub-link-budget': {
          // Break the live connection and let the re-created one through for a few bytes only:
          // an etcd watch dies right after it is re-created, in the middle of its backlog;
          // an agent's resume dies in the middle of its snapshot or deltas.
          const p = link(e.target);
          const direction = e.params[e.params.length - 1] ? 'both' : 'down';
          for (const bytes of e.params.slice(0, -1)) {
            const budget = p.cutAfter(bytes, { direction });
            p.drop();
            await Promise.race([budget.exhausted, sleep(Math.max(300, d))]);
            budget.cancel();
          }
          return true;
        }
        case 'etcd-link-delay': case 'hub-link-delay': {
          const p = link(e.target);
          p.delay(e.params[0]);
          await sleep(d);
          p.delay(0);
          return true;
        }
        case 'etcd-link-throttle': case 'hub-link-throttle': {
          const p = link(e.target);
          p.throttle(e.params[0]);
          await sleep(d);
          p.throttle(0);
          return true;
        }
        case 'partition-compact': {
          // Compaction of history the partitioned hub has not seen: it must list again.
          const p = link(e.target);
          await p.cut();
          await sleep(d / 2);
          await compactNow();
          await sleep(d / 2);
          await p.restore();
          return true;
        }
        case 'compact':
          if (etcdDown) return false;
          await compactNow();
          return true;
        case 'member-kill': case 'member-restart': case 'member-stop': case 'member-partition': case 'leader-move': {
          if (!cluster) return false;
          const m = e.params[0];
          try {
            if (e.kind === 'leader-move') { await cluster.moveLeader(m); return true; }
            if (e.kind === 'member-stop') { cluster.pause(m, true); await sleep(d); cluster.pause(m, false); return true; }
            if (e.kind === 'member-partition') { cluster.isolate(m); await sleep(d); cluster.heal(); return true; }
            if (e.kind === 'member-kill') { await cluster.kill(m); await sleep(d); }
            await cluster.restart(m);
          } catch (error) {
            findings.add('etcd', `${e.kind} m${m}`, (error as Error).message.split('\n')[0]);
          }
          return true;
        }
        case 'etcd-restart': case 'etcd-kill': {
          etcdDown = true;
          try {
            if (e.kind === 'etcd-kill') {
              await etcd!.kill();
              await sleep(d);
            }
            await etcd!.restart();
          } catch (error) {
            findings.add('etcd', 'restart', (error as Error).message.split('\n')[0]);
          } finally {
            etcdDown = false;
          }
          return true;
        }
      }
    };

    await runPlan(plan, execute, startedAt, () => Date.now() >= deadline, faults);
    if (Date.now() < deadline) await sleep(deadline - Date.now());

    // The end: writer stopped (its op in flight settled), every fault healed.
    ending = true;
    writing = false;
    await timeout(writerDone, 60_000, 'the writer settling its last operation').catch((error: Error) => {
      writer!.abort();
      findings.add('soak', 'writer', error.message);
    });
    for (const p of proxies) await p.heal();
    for (const p of procs) p.ensureUp();
    // The lines that say why are the store's: the tap's connections would fill the tail.
    for (const h of hubs) {
      await waitFor(() => hubHealthy(h.port), { timeoutMs: 20_000 }).catch(async () => findings.add('hub-unhealthy', h.name,
        `no /healthz 200 within 20 s after the faults were healed; /healthz: ${await hubHealth(h.port)}; its last lines but agents' comings and goings:\n${h.output(/"msg":"agent (dis)?connected"/)}`));
    }
    // The tier's registry heals too: every hub lists every hub (hub/members.ts; a killed hub's
    // old record goes once it has not changed for 2.5 rounds or its lease ends, 10 s).
    const hubUrls = hubs.map((h) => `ws://127.0.0.1:${h.port}`).sort();
    const registryGaps = async (): Promise<Array<{ hub: string; what: string }>> => {
      const out: Array<{ hub: string; what: string }> = [];
      for (const h of hubs) {
        try {
          const status = JSON.parse((await httpGet(`http://127.0.0.1:${h.port}/status.json`, { timeoutMs: 2000 })).body) as { members: Array<{ url: string; draining: boolean }> };
          const listed = [...new Set(status.members.filter((m) => !m.draining).map((m) => m.url))].sort();
          if (listed.join(' ') !== hubUrls.join(' ')) out.push({ hub: h.name, what: `lists ${listed.join(', ') || 'no hub'}` });
        } catch (error) {
          out.push({ hub: h.name, what: `/status.json: ${(error as Error).message}` });
        }
      }
      return out;
    };
    let gaps: Array<{ hub: string; what: string }> = [];
    await waitFor(async () => (gaps = await registryGaps()).length === 0, { timeoutMs: 30_000 }).catch(() => {
      for (const g of gaps) findings.add('hub-registry', g.hub, `not every hub listed 30 s after the faults were healed (want ${hubUrls.join(', ')}): ${g.hub} ${g.what}`);
    });

    // Convergence: every agent at etcd's final state, on GET and on every open stream.
    const finalRevision = history.lastRevision;
    const last = history.length - 1;
    const finalFps = VIEWS.map((_, v) => history.fps[v][last]);
    const lagging = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const [j, a] of agents.entries()) {
        try {
          const d = await debugOf(base(a));
          if (d.revision < finalRevision) out.push(`${a.name}: revision ${d.revision} < ${finalRevision} (stale ${d.stale}, hub ${d.hub.address ?? '-'} live ${d.hub.live}${d.hub.lastError ? `, last error ${d.hub.lastError}` : ''})`);
          for (const [v, view] of VIEWS.entries()) {
            const res = await httpGet(`${base(a)}${view.path}`, { timeoutMs: 3000 });
            if (res.status !== 200 || bodyFingerprint(res.body) !== finalFps[v]) {
              let detail = `status ${res.status}`;
              try { detail = `keys differing from etcd: ${diffKeys(view.compute(history.state), JSON.parse(res.body)).slice(0, 8).join(' ')}`; } catch { /* not JSON */ }
              out.push(`${a.name} GET ${view.name}: ${detail}`);
            }
          }
          for (const s of streams.slice(j * VIEWS.length, (j + 1) * VIEWS.length)) {
            if (!s.check.connected) out.push(`${a.name} stream ${VIEWS[s.check.view].name}: not connected`);
            else if (s.check.latestFp !== finalFps[s.check.view]) out.push(`${a.name} stream ${VIEWS[s.check.view].name}: last event is not the final state`);
          }
        } catch (error) {
          out.push(`${a.name}: ${(error as Error).message}`);
        }
      }
      return out;
    };
    let behind: string[] = [];
    const convergeStart = Date.now();
    await waitFor(async () => (behind = await lagging()).length === 0, { timeoutMs: convergeMs, intervalMs: 250 }).catch(() => {
      for (const line of behind) findings.add('no-convergence', line.split(':')[0], `${line.slice(line.indexOf(':') + 2)} — ${convergeMs / 1000} s after the writer stopped and every fault was healed`);
    });
    const convergedIn = Date.now() - convergeStart;
    if (cluster) {
      // How often the hubs' watches moved between members (since each hub's last start).
      extra['hub-watch-member-moves'] = 0;
      for (const h of hubs) {
        const text = (await httpGet(`http://127.0.0.1:${h.port}/metrics`).catch(() => ({ body: '' }))).body;
        extra['hub-watch-member-moves'] += Number(/^lainlet_hub_store_watch_member_moves_total (\d+)$/m.exec(text)?.[1] ?? 0);
      }
    }

    for (const s of streams) await s.stop();
    for (const p of pollers) await p.stop();
    for (const t of taps) await t.stop();
    for (const s of streams) s.check.drain(true);
    served.drain(true);
    for (const t of taps) t.drain(true);

    // The model is etcd's state (else the soak itself is wrong).
    const reader = writer.reader();
    try {
      for (const range of KEPT_RANGES) {
        const inEtcd = await timeout(reader.getAll().prefix(range).strings(), 10_000, 'reading etcd');
        const inModel = Object.fromEntries([...history.state].filter(([k]) => k.startsWith(range)));
        const diff = diffKeys(inModel, inEtcd);
        if (diff.length) findings.add('soak-internal', range, `the writer's model differs from etcd: ${diff.slice(0, 8).join(' ')}`);
      }
    } finally {
      reader.close();
    }

    // Every endpoint of every agent answers as a fresh agent that lists etcd itself.
    const [refPort] = await freePorts(1);
    reference = startAgent(['-web', `127.0.0.1:${refPort}`, '-etcd', members.map((m) => m.endpoint).join(','), '-ip', '127.0.0.1', '-hostname', 'node1']);
    const refBase = `http://127.0.0.1:${refPort}`;
    await waitFor(async () => { const d = await debugOf(refBase); return d.hasState && d.revision >= finalRevision; }, { timeoutMs: 20_000, message: `reference agent synced:\n${tail(reference.output())}` });
    for (const p of REFERENCE_PATHS) {
      const want = await httpGet(`${refBase}${p}`);
      for (const a of agents) {
        const have = await httpGet(`${base(a)}${p}`).catch((error: Error) => ({ status: 0, body: error.message }));
        if (have.status === want.status && have.body === want.body) continue;
        let detail = `status ${have.status} (reference ${want.status})`;
        try { detail += `; keys differing: ${diffKeys(JSON.parse(want.body), JSON.parse(have.body)).slice(0, 8).join(' ')}`; } catch { detail += `; body ${have.body.slice(0, 120)} (reference ${want.body.slice(0, 120)})`; }
        findings.add('differs-from-reference', `${a.name} GET ${p}`, detail);
      }
    }

    // The verdict.
    const events = streams.reduce((n, s) => n + s.check.eventCount, 0);
    const claims = taps.reduce((n, t) => n + t.claims, 0);
    const polls = pollers.reduce((n, p) => n + p.polls, 0);
    const rollbacks = records.reduce((n, r) => n + r.killRollbacks, 0);
    const faultList = Object.entries({ ...faults, ...extra }).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}=${n}`).join(' ');
    const total = Object.values(faults).reduce((a, b) => a + b, 0);
    const ok = findings.size === 0;
    const verdict = `SOAK ${ok ? 'PASS' : `FAIL (${findings.size} findings)`} seed=${seed} seconds=${seconds}: ${writer.stats.committed} ops committed (${writer.stats.uncertain} uncertain) up to rev ${finalRevision}, `
      + `${events} stream events, ${polls} polls, ${served.checked} served-state checks, ${claims} hub-state checks, converged in ${(convergedIn / 1000).toFixed(1)} s, ${rollbacks} SIGKILL rollbacks to a state file; `
      + `faults ${total}: ${faultList} — replay: npm run soak -- --seconds ${seconds} --seed ${seed}${nMembers > 1 ? ` --etcd-members ${nMembers}` : ''}${opts.kinds ? ` --faults ${opts.kinds.join(',') || 'none'}` : ''}`;
    return { ok, findings: findings.lines(), verdict, faults };
  } finally {
    teardowns.delete(teardown);
    await teardown();
  }
}
