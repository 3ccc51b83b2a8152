// The soak's eyes on the agents: an event stream per (agent, view), reopened whenever it ends,
// and a poller per agent (GET /debug, a view, /debug again). Everything seen goes to the checker.
import http from 'node:http';
import { httpGet } from '../../testkit/http.js';
import { AgentRecord, Findings, ServedStateCheck, StreamCheck } from './checker.js';
import { bodyFingerprint, VIEWS } from './model.js';

const REQUEST_TIMEOUT_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw lainlet event stream: `field: value` lines, an event ends at an empty line. */
function parseEvents(onEvent: (id: number, event: string, data: string) => void): (text: string) => void {
  let partial = '';
  let id = -1;
  let event = '';
  let data: string[] = [];
  let fields = false;
  return (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line === '') {
        if (fields) onEvent(id, event, data.join('\n'));
        id = -1; event = ''; data = []; fields = false;
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      fields = true;
      if (field === 'id') id = Number(value);
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  };
}

export class StreamObserver {
  private request: http.ClientRequest | undefined;
  private running = true;
  private done: Promise<void> | undefined;
  /** Connections that ended while the agent stayed up and was not being restarted. */
  unexpectedCloses = 0;

  constructor(
    private readonly record: AgentRecord,
    private readonly base: string,
    readonly check: StreamCheck,
    private readonly findings: Findings,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.request?.destroy();
    await this.done;
  }

  private async loop(): Promise<void> {
    const proc = this.record.proc;
    while (this.running) {
      if (proc.state !== 'up') { await sleep(100); continue; }
      const incarnation = proc.incarnation;
      const outcome = await this.connectOnce(incarnation);
      this.check.closed();
      if (outcome === 'ended' && this.running && proc.state === 'up' && !proc.leaving && proc.incarnation === incarnation) {
        this.unexpectedCloses++;
        this.findings.add('stream-closed', `${this.record.name} stream ${VIEWS[this.check.view].name}`, `the agent closed the stream while it was up (incarnation ${incarnation})`);
      }
      await sleep(outcome === 'refused' ? 100 : 50);
    }
  }

  private connectOnce(incarnation: number): Promise<'ended' | 'refused' | 'stale'> {
    const view = VIEWS[this.check.view];
    const url = `${this.base}${view.path}${view.path.includes('?') ? '&' : '?'}watch=1${this.check.view % 3 === 0 ? '&heartbeat=1' : ''}`;
    return new Promise((resolve) => {
      let settled = false;
      const finish = (o: 'ended' | 'refused' | 'stale') => { if (!settled) { settled = true; resolve(o); } };
      const request = http.request(url, { agent: false });
      this.request = request;
      const connectTimer = setTimeout(() => { request.destroy(); finish('refused'); }, REQUEST_TIMEOUT_MS);
      request.on('error', () => { clearTimeout(connectTimer); finish(this.check.connected ? 'ended' : 'refused'); });
      request.on('response', (response) => {
        clearTimeout(connectTimer);
        const proc = this.record.proc;
        // An answer from a process that has been replaced since is not this incarnation's.
        if (proc.incarnation !== incarnation) { request.destroy(); finish('stale'); return; }
        if (response.statusCode !== 200) {
          this.record.sync();
          if (response.statusCode === 503 && this.record.mustHaveState()) this.findings.add('503-with-state', `${this.record.name} stream ${view.name}`, `503 in incarnation ${incarnation}, which had state (from a hub or its state file)`);
          else if (response.statusCode !== 503) this.findings.add('stream-status', `${this.record.name} stream ${view.name}`, `status ${response.statusCode}`);
          response.resume();
          response.on('end', () => finish('refused'));
          response.on('close', () => finish('refused'));
          return;
        }
        this.check.opened(incarnation);
        const push = parseEvents((id, event, data) => {
          this.check.event(id, event, data, event === 'heartbeat' ? undefined : bodyFingerprint(data));
        });
        response.setEncoding('utf8');
        response.on('data', push);
        response.on('end', () => finish('ended'));
        response.on('close', () => finish('ended'));
        response.on('error', () => finish('ended'));
      });
      request.end();
    });
  }
}

interface Debug { revision: number; hasState: boolean; stale: boolean; stateFile: { lastSavedAt: number | null } | null; hub: { address: string; live: boolean; lastError?: string } }

export class AgentPoller {
  private running = true;
  private done: Promise<void> | undefined;
  private turn = 0;
  polls = 0;

  constructor(
    private readonly record: AgentRecord,
    private readonly base: string,
    private readonly served: ServedStateCheck,
    private readonly findings: Findings,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      await this.pollOnce().catch(() => {});
      await sleep(this.intervalMs);
    }
  }

  /** debug → GET a view → debug; answers of a replaced or paused process are dropped. */
  private async pollOnce(): Promise<void> {
    const proc = this.record.proc;
    if (proc.state !== 'up') return;
    const incarnation = proc.incarnation;
    const same = () => proc.incarnation === incarnation && proc.state === 'up' && !proc.leaving;
    const view = this.turn++ % VIEWS.length;
    const first = await debugOf(this.base);
    if (!same()) return;
    this.record.observeDebug(first, this.findings);
    const answer = await httpGet(`${this.base}${VIEWS[view].path}`, { timeoutMs: REQUEST_TIMEOUT_MS });
    if (!same()) return;
    if (answer.status === 503) {
      if (this.record.mustHaveState()) this.findings.add('503-with-state', `${this.record.name} GET ${VIEWS[view].name}`, `503 (${answer.body.slice(0, 100)}) in incarnation ${incarnation}, which had state (from a hub or its state file)`);
      return;
    }
    const second = await debugOf(this.base);
    if (!same()) return;
    this.record.observeDebug(second, this.findings);
    this.polls++;
    if (first.revision === second.revision && first.hasState) {
      this.served.add({ agent: this.record, incarnation, view, revision: first.revision, fp: answer.status === 200 ? bodyFingerprint(answer.body) : undefined, status: answer.status, body: answer.body });
    }
  }
}

export async function debugOf(base: string): Promise<Debug> {
  const res = await httpGet(`${base}/debug`, { timeoutMs: REQUEST_TIMEOUT_MS });
  if (res.status !== 200) throw new Error(`/debug answered ${res.status}`);
  return JSON.parse(res.body) as Debug;
}
