// The review's "one place for each thing": the programs' defaults are the ones in
// HUB_DEFAULTS / AGENT_DEFAULTS, and errors on the hub's extra routes and in the agent's
// embedded hub reach the operator instead of vanishing.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { AGENT_DEFAULTS } from '../agent/defaults.js';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import { hubMetrics } from '../hub/metrics.js';
import { MemoryStore } from '../hub/store/memory.js';
import { PROTOCOL_VERSION } from '../shared/protocol.js';
import { run } from './helpers/cli.js';
import { FakeAgent, hubOn } from './helpers/fake-agent.js';
import { httpGet } from '../testkit/http.js';

/** The `(default N` a Go-style usage text gives for a flag. */
function usageDefault(usage: string, flag: string): string | undefined {
  const lines = usage.split('\n');
  const at = lines.findIndex((l) => new RegExp(`^\\s+-{1,2}${flag.replace('.', '\\.')}\\b`).test(l));
  if (at < 0) return undefined;
  return /\(default "?([^",)]*)"?/.exec(lines[at + 1] ?? '')?.[1];
}

test('the hub\'s flags default to HUB_DEFAULTS', async (t) => {
  const r = await run('hub', ['--help']);
  t.is(r.code, 0, r.stderr);
  const want: Record<string, string | number> = {
    prefix: HUB_DEFAULTS.prefix,
    'history-count': HUB_DEFAULTS.historyMaxCount,
    'history-bytes': HUB_DEFAULTS.historyMaxBytes,
    'history-prefill': HUB_DEFAULTS.historyPrefillRevisions,
    'max-backpressure': HUB_DEFAULTS.maxBackpressure,
    'max-total-backpressure': HUB_DEFAULTS.maxTotalBackpressure,
    'progress-interval': HUB_DEFAULTS.progressIntervalMs,
    'shutdown-spread': HUB_DEFAULTS.shutdownSpreadMs,
  };
  for (const [flag, value] of Object.entries(want)) t.is(usageDefault(r.stdout, flag), String(value), flag);
});

test('the agent\'s flags default to AGENT_DEFAULTS, and its silence timeout is three of the hubs\' progress periods', async (t) => {
  const r = await run('agent', ['-h']);
  t.is(r.code, 0, r.stderr);
  t.is(usageDefault(r.stdout, 'silence-timeout'), String(AGENT_DEFAULTS.silenceTimeoutMs));
  t.is(usageDefault(r.stdout, 'reconnect-max'), String(AGENT_DEFAULTS.backoffCapMs));
  t.regex(r.stdout, new RegExp(`backoff from ${AGENT_DEFAULTS.backoffBaseMs} ms\\) \\(default \\d+, at least ${AGENT_DEFAULTS.backoffBaseMs}\\)`));
  t.is(usageDefault(r.stdout, 'prefix'), HUB_DEFAULTS.prefix);
  // A hub on its default interval is never dropped as silent by an agent on its default.
  t.is(AGENT_DEFAULTS.silenceTimeoutMs, 3 * HUB_DEFAULTS.progressIntervalMs);
});

test('a rejected client is counted as rejectedClients and exported under the metric name dashboards use', async (t) => {
  const metrics = hubMetrics();
  const hub = await hubOn(new MemoryStore({ '/lain/config/domain': 'lain.local' }), {
    routes: { '/metrics': () => ({ status: 200, contentType: metrics.contentType, body: metrics.render() }) },
  });
  metrics.bind(hub);
  t.teardown(() => hub.stop());
  const rogue = new FakeAgent(hub.port, 'text is not the protocol');
  await rogue.until(() => rogue.closed !== undefined);
  t.is(hub.server.counters.rejectedClients, 1);
  const body = (await httpGet(`http://127.0.0.1:${hub.port}/metrics`)).body;
  t.regex(body, /^lainlet_hub_rejected_clients_total 1$/m);
});

/** A logger whose JSON lines a test can read. */
function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(l); cb(); } });
  return { log: pino({ level: 'info' }, sink), lines };
}

test('a hub route that throws or whose body rejects is answered 500 and logged, and the hub goes on serving', async (t) => {
  const { log, lines } = capturingLogger();
  const hub = await hubOn(new MemoryStore({ '/lain/config/domain': 'lain.local' }), {
    routes: {
      '/throws': () => { throw new Error('route blew up'); },
      '/rejects': () => ({ status: 200, contentType: 'text/plain', body: Promise.reject(new Error('body never came')) }),
      '/works': () => ({ status: 200, contentType: 'text/plain', body: 'fine' }),
    },
  }, log);
  t.teardown(() => hub.stop());
  const base = `http://127.0.0.1:${hub.port}`;
  const thrown = await httpGet(`${base}/throws`);
  t.is(thrown.status, 500);
  t.regex(thrown.body, /route blew up/);
  const rejected = await httpGet(`${base}/rejects`);
  t.is(rejected.status, 500);
  t.regex(rejected.body, /body never came/);
  for (const [path, why] of [['/throws', 'route blew up'], ['/rejects', 'body never came']]) {
    t.true(lines.some((l) => l.includes('"hub route failed; answered 500"') && l.includes(`"path":"${path}"`) && l.includes(why)), `${path} logged`);
  }
  // Still serving: the other routes, health, and agents.
  t.is((await httpGet(`${base}/works`)).body, 'fine');
  t.is((await httpGet(`${base}/healthz`)).status, 200);
  const agent = new FakeAgent(hub.port, { t: 'hello', v: PROTOCOL_VERSION, node: 'n1', rev: 0 });
  await agent.until(() => agent.of('prog').length > 0);
  t.deepEqual(agent.of('snap')[0]?.puts, [['/lain/config/domain', 'lain.local']], 'the agent got its snapshot');
  agent.ws.close();
});

test('a standalone agent whose embedded hub cannot listen fails at start with one clear line and exit 1', async (t) => {
  // uWebSockets.js answers a listen it cannot bind with no socket: a preload makes every
  // listen of this process do so (the App stays the native one, so the runtime check passes).
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-review-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const uws = createRequire(import.meta.url).resolve('uWebSockets.js');
  const preload = join(dir, 'no-listen.cjs');
  writeFileSync(preload, `const uws = require(${JSON.stringify(uws)});
uws.App = new Proxy(uws.App, { apply(target, self, args) {
  const app = Reflect.apply(target, self, args);
  app.listen = (host, port, cb) => { cb(false); return app; };
  return app;
} });
`);
  const r = await run('agent', ['-web', '127.0.0.1:0', '-etcd', '127.0.0.1:1'], { env: { NODE_OPTIONS: `--require ${preload}` } });
  t.false(r.started, r.stdout);
  t.is(r.code, 1);
  t.is(r.stderr, 'lainlet-agent: cannot start the embedded hub: cannot listen on 127.0.0.1:0\n');
});
