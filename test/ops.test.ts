// The operator's tooling in ops/ (issue 12): the Prometheus rules pass promtool's check and
// their unit tests, the Grafana dashboard is valid JSON with valid PromQL, and every lainlet
// metric that ops/ names is exposed by a real hub and agent (programs from dist/: `npm run
// build` first) on a real etcd. Also: the headless browser (testkit/browser.ts) works here.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withBrowser } from '../testkit/browser.js';
import { etcdClient, putAll, startEtcd } from '../testkit/etcd.js';
import { httpGet } from '../testkit/http.js';
import { metricValue } from '../testkit/metrics.js';
import { freePorts } from '../testkit/ports.js';
import { startAgent, startHub, waitFor } from '../testkit/procs.js';
import { fixtureKvs, hubHealthy } from './helpers/cluster.js';

const OPS = fileURLToPath(new URL('../ops/', import.meta.url));
const RULES = join(OPS, 'lainlet-alerts.yml');
const RULE_TESTS = join(OPS, 'lainlet-alerts.test.yml');
const DASHBOARD = join(OPS, 'grafana-lainlet.json');

// ---------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------

const PROMTOOL_HINT = 'promtool (Debian 12 package `prometheus`) is not installed: run `apt-get install -y --no-install-recommends prometheus` (.ci/run installs it when missing)';

function promtoolPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    throw new Error(PROMTOOL_HINT);
  }
}

function promtool(...args: string[]): Promise<{ code: number | null; output: string }> {
  const bin = promtoolPath();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

test('promtool check rules: ops/lainlet-alerts.yml is valid', async (t) => {
  const { code, output } = await promtool('check', 'rules', RULES);
  t.is(code, 0, output);
  t.regex(output, /SUCCESS: \d+ rules found/);
});

test('promtool test rules: every alert fires and stays quiet where ops/lainlet-alerts.test.yml says', async (t) => {
  const { code, output } = await promtool('test', 'rules', RULE_TESTS);
  t.is(code, 0, output);
  t.regex(output, /SUCCESS/);
});

test('every alert has a for, a severity, a summary and a description, and a unit test that fires it', (t) => {
  const rules = readFileSync(RULES, 'utf8');
  const tests = readFileSync(RULE_TESTS, 'utf8');
  const blocks = rules.split(/\n(?= +- alert: )/).slice(1);
  t.true(blocks.length >= 10, 'the rules file has its alerts');
  for (const block of blocks) {
    const name = /- alert: (\w+)/.exec(block)![1];
    for (const field of [/\n\s+for: \d+[smh]\n/, /\n\s+severity: (critical|warning)\n/, /\n\s+summary: /, /\n\s+description: /]) {
      t.regex(block, field, `${name} has ${field}`);
    }
    // Fired: an eval of this alert followed by a non-empty exp_alerts.
    t.regex(tests, new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`), `${name} is tested firing`);
    t.regex(tests, new RegExp(`alertname: ${name}\\n\\s+exp_alerts: \\[\\]`), `${name} is tested not firing`);
  }
});

// ---------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------

interface Panel { type: string; title: string; datasource?: { uid?: string }; targets?: Array<{ expr?: string }>; panels?: Panel[] }
interface Dashboard { schemaVersion: number; __inputs?: Array<{ name: string; type: string; pluginId: string }>; panels: Panel[]; templating: { list: Array<{ name: string; type: string; query?: unknown }> } }

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

function dashboardPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
}

test('the Grafana dashboard parses, takes its Prometheus as ${DS_PROMETHEUS}, and every panel has a query', (t) => {
  const d = dashboard();
  t.true(d.schemaVersion >= 36, 'a current schema');
  t.deepEqual(d.__inputs?.map((i) => [i.name, i.type, i.pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']]);
  t.true(d.templating.list.some((v) => v.name === 'DS_PROMETHEUS' && v.type === 'datasource'), 'a datasource variable for provisioning');
  const panels = dashboardPanels(d);
  t.true(panels.length >= 20);
  for (const p of panels) {
    t.is(p.datasource?.uid, '${DS_PROMETHEUS}', `${p.title}: datasource`);
    t.true((p.targets ?? []).length > 0 && p.targets!.every((q) => typeof q.expr === 'string' && q.expr.includes('lainlet_') || /\bup\{/.test(q.expr ?? '')), `${p.title}: queries`);
  }
});

test('every dashboard query is valid PromQL (promtool checks them as rules)', async (t) => {
  const exprs = dashboardPanels(dashboard()).flatMap((p) => (p.targets ?? []).map((q) => q.expr!));
  // Grafana's variables, as Grafana would substitute them.
  const promql = exprs.map((e) => e.replaceAll('$__rate_interval', '5m').replaceAll('$hub', '.*').replaceAll('$agent', '.*'));
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-ops-dash-'));
  try {
    const file = join(dir, 'dashboard-as-rules.yml');
    const rules = promql.map((e, i) => `      - record: lainlet:dashboard_query_${i}\n        expr: ${JSON.stringify(e)}`).join('\n');
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
    const { code, output } = await promtool('check', 'rules', file);
    t.is(code, 0, output);
    t.regex(output, new RegExp(`SUCCESS: ${promql.length} rules found`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// Every metric name in ops/ exists
// ---------------------------------------------------------------------------

/** The lainlet metric names in `text` (rules, their tests, the dashboard, the README). */
export function metricNamesIn(text: string): Set<string> {
  return new Set(text.match(/\blainlet_(?:hub|agent)_[a-z0-9_]*[a-z0-9]\b/g) ?? []);
}

/** The metric families a /metrics body declares (# TYPE lines) and the sample names in it. */
export function exposedNames(scrape: string): Set<string> {
  const names = new Set<string>();
  for (const line of scrape.split('\n')) {
    const m = /^# TYPE (\S+) /.exec(line) ?? /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )/.exec(line);
    if (m) names.add(m[1]);
  }
  return names;
}

/** The names in `used` that no scrape exposes (a histogram's _bucket/_sum/_count count as its family), minus `allowed`. */
export function missingMetrics(used: Iterable<string>, exposed: Set<string>, allowed: Set<string> = new Set()): string[] {
  const has = (name: string) => exposed.has(name) || exposed.has(name.replace(/_(bucket|sum|count)$/, ''));
  return [...used].filter((name) => !has(name) && !allowed.has(name)).sort();
}

function namesUsedInOps(): Map<string, string[]> {
  const where = new Map<string, string[]>();
  for (const file of readdirSync(OPS).sort()) {
    for (const name of metricNamesIn(readFileSync(join(OPS, file), 'utf8'))) where.set(name, [...(where.get(name) ?? []), file]);
  }
  return where;
}

test('the metric check itself: a made-up name is reported, a histogram\'s _bucket is not, the allow-list is honoured', (t) => {
  const exposed = exposedNames('# HELP lainlet_hub_revision r\n# TYPE lainlet_hub_revision gauge\nlainlet_hub_revision 7\n# TYPE lainlet_hub_gc_seconds histogram\nlainlet_hub_gc_seconds_bucket{le="1"} 0\n');
  const rule = 'expr: lainlet_hub_revision - lainlet_hub_revison_typo > 0 and rate(lainlet_hub_gc_seconds_bucket[5m]) > lainlet_hub_members';
  t.deepEqual(missingMetrics(metricNamesIn(rule), exposed), ['lainlet_hub_members', 'lainlet_hub_revison_typo']);
  t.deepEqual(missingMetrics(metricNamesIn(rule), exposed, new Set(['lainlet_hub_members'])), ['lainlet_hub_revison_typo']);
  t.deepEqual([...metricNamesIn('up{job=~"lainlet-hub.*"} lainlet_hub_x{a="b"}[5m]')], ['lainlet_hub_x']);
});

test('every lainlet metric named in ops/ is exposed by a real hub (with worker threads) and agent (with gRPC)', async (t) => {
  t.timeout(90_000);
  const used = namesUsedInOps();
  t.true(used.size >= 30, `ops/ names the metrics (${used.size})`);

  const etcd = await startEtcd();
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-ops-'));
  const [hubPort, agentPort, grpcPort] = await freePorts(3);
  const hub = startHub(['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`, '--workers', '2', '--progress-interval', '300']);
  const agent = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1', '-noauth',
    '-state-dir', dir, '-grpc.addr', `127.0.0.1:${grpcPort}`]);
  try {
    const client = etcdClient(etcd);
    await putAll(client, fixtureKvs('cluster-small'));
    client.close();
    await waitFor(() => hubHealthy(hubPort), { timeoutMs: 20_000, message: `the hub healthy; output:\n${hub.output()}` });
    const agentMetrics = async () => (await httpGet(`http://127.0.0.1:${agentPort}/metrics`)).body;
    await waitFor(async () => metricValue(await agentMetrics(), 'lainlet_agent_stale') === 0, { timeoutMs: 20_000, message: `the agent in sync; output:\n${agent.output()}` });
    await httpGet(`http://127.0.0.1:${agentPort}/v2/configwatcher?target=domain`);

    const hubScrape = (await httpGet(`http://127.0.0.1:${hubPort}/metrics`)).body;
    const agentScrape = await agentMetrics();
    t.true(metricValue(hubScrape, 'lainlet_hub_agents_connected') >= 1, 'the agent is connected to the hub scraped');
    t.regex(hubScrape, /^lainlet_hub_worker_agents_connected\{worker="1"\} /m, 'per-worker series');
    const exposed = new Set([...exposedNames(hubScrape), ...exposedNames(agentScrape)]);

    const missing = missingMetrics(used.keys(), exposed);
    t.deepEqual(missing.map((name) => `${name} (in ${used.get(name)!.join(', ')})`), [], 'metrics named in ops/ that neither the hub nor the agent exposes');
  } finally {
    await Promise.all([agent.kill(), hub.kill()]);
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// The headless browser
// ---------------------------------------------------------------------------

test('testkit/browser.ts: Debian\'s chromium, headless through puppeteer-core, opens a data: URL', async (t) => {
  t.timeout(60_000);
  const title = await withBrowser(async (browser) => {
    const page = await browser.newPage();
    await page.goto('data:text/html,<!doctype html><title>lainlet ops</title><p>ok</p>');
    return page.title();
  });
  t.is(title, 'lainlet ops');
});
