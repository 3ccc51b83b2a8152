// The operator's page (hub/status.ts) in a real headless browser (Debian's chromium through
// puppeteer-core): the members and this hub's agents are shown, and the page updates itself
// when an agent connects. Also /status.json's shape, which the page and scripts read.
import test from 'ava';
import { startAgent } from '../agent/agent.js';
import { MemoryMembers } from '../hub/members.js';
import { hubStatus, type StatusJson } from '../hub/status.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { hubOn } from './helpers/fake-agent.js';
import { withBrowser } from '../testkit/browser.js';
import { httpGet } from '../testkit/http.js';
import { freePorts } from '../testkit/ports.js';
import { waitFor } from '../testkit/procs.js';

test('/status shows the members and this hub\'s agents, and updates itself when an agent connects', async (t) => {
  t.timeout(60_000);
  const store = new MemoryStore({ '/lain/config/domain': 'lain.local' });
  const [p1, p2] = await freePorts(2);
  const started = async (port: number) => {
    const status = hubStatus(`ws://127.0.0.1:${port}`);
    const hub = await hubOn(store, { port, routes: status.routes, members: { backend: new MemoryMembers(store), advertise: `ws://127.0.0.1:${port}`, refreshMs: 150 } });
    status.bind(hub);
    return hub;
  };
  const hub = await started(p1);
  const other = await started(p2);
  const agentOn = (node: string) => startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: node, noauth: true, hubs: [`ws://127.0.0.1:${p1}`] }, silentLogger);
  const first = await agentOn('node-a');
  let second: Awaited<ReturnType<typeof agentOn>> | undefined;
  try {
    await waitFor(() => first.client.status.live && hub.membership!.members.length === 2, { message: 'agent live, both members known' });
    const json = JSON.parse((await httpGet(`http://127.0.0.1:${p1}/status.json`)).body) as StatusJson;
    t.is(json.hub.url, `ws://127.0.0.1:${p1}`);
    t.deepEqual(json.members.map((m) => m.url).sort(), [`ws://127.0.0.1:${p1}`, `ws://127.0.0.1:${p2}`].sort());
    t.like(json.agents[0], { node: 'node-a', phase: 'live', protocol: 2 });
    await withBrowser(async (browser) => {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${p1}/status`);
      // Evaluated in the page (as text: the test is type-checked without the DOM's types).
      const inPage = async <T>(expr: string): Promise<T> => JSON.parse(await page.evaluate(`JSON.stringify(${expr})`) as string) as T;
      const rows = (table: string) => inPage<string[][]>(`[...document.querySelectorAll('#${table} tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent))`);
      await page.waitForFunction("document.querySelectorAll('#members tbody tr').length === 2 && document.querySelectorAll('#agents tbody tr').length === 1");
      const members = await rows('members');
      t.deepEqual(members.map((r) => r[0]).sort(), [`ws://127.0.0.1:${p1}`, `ws://127.0.0.1:${p2}`].sort(), 'both members, by URL');
      t.true(members.every((r) => r[4] === 'ok'), 'neither stale');
      t.is((await rows('agents'))[0][0], 'node-a');
      second = await agentOn('node-b');
      // The page reads status.json again by itself: the new agent appears without a reload.
      await page.waitForFunction("document.querySelectorAll('#agents tbody tr').length === 2", { timeout: 15_000 });
      t.deepEqual((await rows('agents')).map((r) => r[0]), ['node-a', 'node-b']);
      t.regex(await inPage<string>("document.getElementById('summary').textContent"), /2 agents/);
    });
  } finally {
    await second?.stop();
    await first.stop();
    await hub.stop();
    await other.stop();
  }
});
