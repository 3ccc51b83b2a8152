// The operator's view of a hub: /status.json (the hub tier's members with their agent counts,
// revisions, lag behind the store and staleness; this hub's agents) and /status, a plain HTML
// page whose script reads /status.json every two seconds. No build step: the page is here.
import { VERSION } from '../shared/version.js';
import type { AgentInfo } from './fanout.js';
import type { Hub } from './hub.js';
import type { RouteHandler } from './server.js';

export interface StatusJson {
  at: number;
  hub: {
    id: string; url: string; version: string; revision: number; stale: boolean; current: boolean;
    agents: number; workers: number; startedAt: number; storeRevision: number; registered: boolean;
  };
  members: Array<{ id: string; url: string; agents: number; revision: number; lag: number; stale: boolean; version: string; startedAt: number; self: boolean; draining: boolean }>;
  agents: AgentInfo[];
}

const STARTED_AT = Date.now();

/** The two routes; bind() them to the hub once it runs. */
export function hubStatus(advertise?: string) {
  let hub: Hub | undefined;
  const json = async (): Promise<StatusJson> => {
    if (!hub) throw new Error('the hub is starting');
    const m = hub.membership;
    const self = m?.members.find((x) => x.self);
    return {
      at: Date.now(),
      hub: {
        id: m?.id ?? '', url: advertise ?? '', version: VERSION, revision: hub.state.revision, stale: hub.state.stale,
        current: hub.sync.current, agents: hub.server.agentCount, workers: hub.pool?.workers ?? 0, startedAt: STARTED_AT,
        storeRevision: m?.storeRevision ?? 0, registered: self !== undefined,
      },
      members: (m?.members ?? []).map(({ id, url, agents, revision, lag, stale, version, startedAt, self: isSelf, draining }) => ({ id, url, agents, revision, lag, stale, version, startedAt, self: isSelf, draining: draining === true })),
      agents: (await hub.server.agents()).sort((a, b) => a.node.localeCompare(b.node) || a.id - b.id),
    };
  };
  const routes: Record<string, RouteHandler> = {
    '/status.json': () => ({ status: 200, contentType: 'application/json', body: json().then((j) => JSON.stringify(j)) }),
    '/status': () => ({ status: 200, contentType: 'text/html; charset=utf-8', body: STATUS_PAGE }),
  };
  return { routes, bind(h: Hub) { hub = h; } };
}

export const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lainlet hub</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222 }
table { border-collapse: collapse; margin: .5em 0 1.5em } th, td { padding: .25em .8em; text-align: left; border-bottom: 1px solid #ddd }
th { background: #f4f4f4 } td.n { text-align: right; font-variant-numeric: tabular-nums } tr.self td { font-weight: 600 }
.stale { color: #b00 } .ok { color: #070 } #err { color: #b00 }
</style></head>
<body>
<h1>lainlet hub <span id="url"></span></h1>
<p id="summary"></p><p id="err"></p>
<h2>Members</h2>
<table id="members"><thead><tr><th>hub</th><th>agents</th><th>revision</th><th>lag behind etcd</th><th>state</th><th>version</th><th>up since</th></tr></thead><tbody></tbody></table>
<h2>Agents on this hub (<span id="count">0</span>)</h2>
<table id="agents"><thead><tr><th>node</th><th>version</th><th>revision</th><th>phase</th><th>connected since</th><th>queued bytes</th><th>address</th><th>worker</th></tr></thead><tbody></tbody></table>
<script>
const cell = (text, cls) => { const td = document.createElement('td'); td.textContent = String(text); if (cls) td.className = cls; return td; };
const when = (ms) => new Date(ms).toLocaleString();
function fill(id, rows, make) {
  const body = document.querySelector('#' + id + ' tbody');
  body.replaceChildren(...rows.map((r) => { const tr = document.createElement('tr'); for (const td of make(r)) tr.appendChild(td); if (r.self) tr.className = 'self'; return tr; }));
}
async function refresh() {
  try {
    const s = await (await fetch('status.json', { cache: 'no-store' })).json();
    document.getElementById('url').textContent = s.hub.url;
    document.getElementById('summary').textContent = 'revision ' + s.hub.revision + (s.hub.stale ? ' (STALE: etcd unreachable)' : '') + ', ' + s.hub.agents + ' agents, ' + (s.hub.workers || 'no') + ' worker threads, version ' + s.hub.version + (s.hub.registered ? '' : ', not registered in the hub tier');
    document.getElementById('err').textContent = '';
    fill('members', s.members, (m) => [cell(m.url), cell(m.agents, 'n'), cell(m.revision, 'n'), cell(m.lag, 'n'), cell(m.draining ? 'draining' : m.stale ? 'stale' : 'ok', m.stale ? 'stale' : 'ok'), cell(m.version), cell(when(m.startedAt))]);
    document.getElementById('count').textContent = s.agents.length;
    fill('agents', s.agents, (a) => [cell(a.node), cell(a.version || '-'), cell(a.rev, 'n'), cell(a.phase), cell(when(a.since)), cell(a.queuedBytes, 'n'), cell(a.remote), cell(a.worker ?? '-')]);
  } catch (e) {
    document.getElementById('err').textContent = 'cannot read status.json: ' + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
`;
