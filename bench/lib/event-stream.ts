// A reader for the agent's /v2 event streams (API.md §3 framing: "id: N\nevent: E\ndata: D\n\n"),
// timestamping each event on arrival with the shared monotonic clock.
import http from 'node:http';
import { monoMs } from './stats.js';

export interface StreamEvent { id: number; event: string; data: string; at: number }

export interface EventStream {
  status: number;
  close(): void;
  /** The next event for which `match` holds, arriving from now on. */
  next(match: (e: StreamEvent) => boolean, timeoutMs?: number): Promise<StreamEvent>;
}

export function openEventStream(url: string): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false });
    req.once('error', reject);
    req.once('response', (res) => {
      const waiters = new Set<{ match: (e: StreamEvent) => boolean; resolve: (e: StreamEvent) => void }>();
      let partial = '';
      let cur: { id: number; event: string; data: string[] } = { id: -1, event: '', data: [] };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = monoMs();
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          if (line === '') {
            const ev = { id: cur.id, event: cur.event, data: cur.data.join('\n'), at };
            cur = { id: -1, event: '', data: [] };
            for (const w of waiters) if (w.match(ev)) { waiters.delete(w); w.resolve(ev); }
            continue;
          }
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'id') cur.id = Number(value);
          else if (field === 'event') cur.event = value;
          else if (field === 'data') cur.data.push(value);
        }
      });
      res.on('error', () => {});
      resolve({
        status: res.statusCode!,
        close: () => req.destroy(),
        next(match, timeoutMs = 10_000) {
          return new Promise((res2, rej2) => {
            const w = { match, resolve: (e: StreamEvent) => { clearTimeout(timer); res2(e); } };
            const timer = setTimeout(() => { waiters.delete(w); rej2(new Error(`no matching event on ${url} within ${timeoutMs} ms`)); }, timeoutMs);
            waiters.add(w);
          });
        },
      });
    });
  });
}
