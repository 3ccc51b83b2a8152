// Pins the hub's fan-out economics: every delta is encoded exactly once, whatever the number of
// agents, and the same bytes (the very Buffer kept in the delta history) go to all of them —
// live by one pub/sub publish, and to resuming agents straight from the history.
//
// Counting encodings: protocol.ts keeps one msgpackr Packr, whose constructor assigns
// `this.pack`. Before the hub's modules are loaded (hence the dynamic imports below), an
// accessor on Packr.prototype catches that assignment and wraps the instance's pack, so every
// frame the hub encodes is counted by its type. A hub that encoded per agent or per send
// would show more than one 'delta' encoding per delta.
import test, { type ExecutionContext } from 'ava';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';

const encoded: string[] = [];
Object.defineProperty(Packr.prototype, 'pack', {
  configurable: true,
  get() { return undefined; },
  set(this: object, fn: (value: unknown, options?: unknown) => Uint8Array) {
    Object.defineProperty(this, 'pack', {
      configurable: true,
      writable: true,
      value(this: unknown, value: unknown, options?: unknown) {
        encoded.push(String((value as { t?: unknown } | null)?.t));
        return fn.call(this, value, options);
      },
    });
  },
});

const { HubState } = await import('../hub/state.js');
const { HubServer } = await import('../hub/server.js');
const { decodeFrame, encodeFrame, keyRangeFilter } = await import('../shared/protocol.js');
const { silentLogger } = await import('../shared/log.js');
type HubFrame = import('../shared/protocol.js').HubFrame;
type HubStateT = InstanceType<typeof HubState>;
type HubServerT = InstanceType<typeof HubServer>;

const encodings = (t: string) => encoded.filter((x) => x === t).length;

/** A raw agent: says hello, records every frame (and its bytes), resolves waits on events. */
class RawAgent {
  readonly frames: Array<{ frame: HubFrame; bytes: Buffer }> = [];
  private readonly ws: WebSocket;
  private waits: Array<{ pred: () => boolean; resolve: () => void; reject: (e: Error) => void }> = [];

  constructor(t: ExecutionContext, port: number, rev: number) {
    t.teardown(() => this.ws.terminate());
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('open', () => this.ws.send(encodeFrame({ t: 'hello', v: 1, node: 'n', rev })));
    this.ws.on('message', (data: Buffer) => {
      this.frames.push({ frame: decodeFrame(data) as HubFrame, bytes: Buffer.from(data) });
      this.check();
    });
    this.ws.on('close', (code, reason) => {
      for (const w of this.waits.splice(0)) w.reject(new Error(`agent closed ${code} ${reason.toString()}`));
    });
    this.ws.on('error', () => {});
  }

  of(t: HubFrame['t']) { return this.frames.filter((f) => f.frame.t === t); }

  until(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waits.push({ pred, resolve, reject }));
  }

  /** Live: the hub sends its first progress frame once the agent is caught up. */
  live(): Promise<void> { return this.until(() => this.of('prog').length > 0); }

  private check(): void {
    this.waits = this.waits.filter((w) => {
      if (!w.pred()) return true;
      w.resolve();
      return false;
    });
  }
}

async function hubWith(t: ExecutionContext, seed: Array<[string, string]>): Promise<{ state: HubStateT; server: HubServerT; publishes: Buffer[] }> {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  const server = new HubServer(state, {
    host: '127.0.0.1', port: 0, maxBackpressure: 16 << 20, maxAgentFrameBytes: 64 * 1024,
    progressIntervalMs: 60_000, helloTimeoutMs: 10_000,
  }, silentLogger);
  t.teardown(() => server.close());
  // Record what goes to the pub/sub topic (uWS.TemplatedApp.publish is a writable property).
  const publishes: Buffer[] = [];
  const app = (server as unknown as { app: { publish: (topic: string, msg: Buffer, binary: boolean) => boolean } }).app;
  const publish = app.publish.bind(app);
  app.publish = (topic, msg, binary) => {
    publishes.push(msg);
    return publish(topic, msg, binary);
  };
  state.replaceAll(1, seed);
  state.setStale(false);
  await server.listen();
  return { state, server, publishes };
}

const SEED: Array<[string, string]> = [['/lain/config/domain', 'lain.local'], ['/lain/config/vip', '10.0.0.1']];

for (const agents of [1, 10, 50]) {
  test.serial(`a delta is encoded once and the same Buffer is published to all ${agents} live agent(s)`, async (t) => {
    t.timeout(30_000);
    const { state, server, publishes } = await hubWith(t, SEED);
    const all = Array.from({ length: agents }, () => new RawAgent(t, server.port, 0));
    await Promise.all(all.map((a) => a.live()));

    const before = encodings('delta');
    const sentBefore = server.counters.deltasSentFrames;
    publishes.length = 0;
    for (let rev = 2; rev <= 4; rev++) state.apply({ revision: rev, puts: [['/lain/config/domain', `d${rev}`]], dels: [] });
    await Promise.all(all.map((a) => a.until(() => a.of('delta').length === 3)));

    t.is(encodings('delta') - before, 3, 'one encoding per delta, not per agent or per send');
    // The frames the history keeps are the ones published, object for object.
    const history = state.framesAfter(1)!.map((e) => e.frame);
    t.is(history.length, 3);
    const deltaPublishes = publishes.filter((b) => decodeFrame(b).t === 'delta');
    t.is(deltaPublishes.length, 3, 'one publish per delta');
    for (let i = 0; i < 3; i++) t.is(deltaPublishes[i], history[i], `delta ${i} published is the history's own Buffer`);
    // Every agent received exactly those bytes.
    for (const a of all) {
      const got = a.of('delta').map((f) => f.bytes);
      for (let i = 0; i < 3; i++) t.true(got[i].equals(history[i]));
    }
    t.is(server.counters.deltasSentFrames - sentBefore, 3 * agents);
  });
}

test.serial('agents resuming from history are sent the kept delta frames, never re-encoded', async (t) => {
  t.timeout(30_000);
  const { state, server } = await hubWith(t, SEED);
  for (let rev = 2; rev <= 5; rev++) state.apply({ revision: rev, puts: [['/lain/config/domain', `d${rev}`]], dels: [] });
  const history = state.framesAfter(1)!.map((e) => e.frame);
  t.is(history.length, 4);
  const before = encodings('delta');
  const all = Array.from({ length: 10 }, () => new RawAgent(t, server.port, 1));
  await Promise.all(all.map((a) => a.live()));
  t.is(encodings('delta') - before, 0, 'catch-up sends the history as it is');
  for (const a of all) {
    t.is(a.of('snap').length, 0);
    const got = a.of('delta').map((f) => f.bytes);
    t.is(got.length, 4);
    for (let i = 0; i < 4; i++) t.true(got[i].equals(history[i]));
  }
});

test.serial('a snapshot is encoded once per revision for all agents that need one', async (t) => {
  t.timeout(30_000);
  const { state, server } = await hubWith(t, SEED);
  state.apply({ revision: 2, puts: [['/lain/config/a', '1']], dels: [] });
  const before = encodings('snap');
  const all = Array.from({ length: 10 }, () => new RawAgent(t, server.port, 0));
  await Promise.all(all.map((a) => a.live()));
  t.is(encodings('snap') - before, 1);
  t.is(server.counters.snapshotsSent, 10);
  const first = all[0].of('snap')[0].bytes;
  for (const a of all) t.true(a.of('snap')[0].bytes.equals(first));
});
