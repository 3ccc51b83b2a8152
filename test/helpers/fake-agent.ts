// A hub on the in-memory store and fake agents (raw WebSocket clients) for in-process hub tests.
import WebSocket from 'ws';
import { startHub, type Hub } from '../../hub/hub.js';
import type { Store } from '../../hub/store/types.js';
import { decodeFrame, encodeFrame, type HubFrame } from '../../shared/protocol.js';
import { silentLogger, type Logger } from '../../shared/log.js';

/**
 * Worker threads of the hubs tests start in-process: LAINLET_TEST_HUB_WORKERS (default 0, the
 * agents served on the test's own thread). `npm test` runs the hub tests with 2 as well.
 */
export const TEST_HUB_WORKERS = Number(process.env.LAINLET_TEST_HUB_WORKERS ?? '0');

export async function hubOn(store: Store, over: Partial<Parameters<typeof startHub>[0]> = {}, log: Logger = silentLogger): Promise<Hub> {
  const hub = await startHub({
    store, prefix: '/lain/', host: '127.0.0.1', port: 0, workers: TEST_HUB_WORKERS,
    historyMaxCount: 100, historyMaxBytes: 1 << 20, maxBackpressure: 1 << 20, progressIntervalMs: 200, ...over,
  }, log);
  await hub.ready;
  return hub;
}

export class FakeAgent {
  frames: HubFrame[] = [];
  closed?: { code: number; reason: string };
  readonly ws: WebSocket;
  private waiters: Array<() => void> = [];

  constructor(port: number, hello?: object | Buffer | string) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    this.ws.on('open', () => {
      if (hello === undefined) return;
      if (typeof hello === 'string' || Buffer.isBuffer(hello)) this.ws.send(hello);
      else this.ws.send(encodeFrame(hello as never));
    });
    this.ws.on('message', (data: Buffer) => { this.frames.push(decodeFrame(data) as HubFrame); this.poke(); });
    this.ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; this.poke(); });
    this.ws.on('error', () => {});
  }

  private poke() { for (const w of this.waiters.splice(0)) w(); }

  async until(pred: () => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out; frames: ${JSON.stringify(this.frames.map((f) => f.t))} closed: ${JSON.stringify(this.closed)}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }

  of<T extends HubFrame['t']>(t: T): Array<Extract<HubFrame, { t: T }>> {
    return this.frames.filter((f) => f.t === t) as Array<Extract<HubFrame, { t: T }>>;
  }
}

