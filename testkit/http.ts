// HTTP clients for lainlet's servers: one request on a fresh connection, an event stream parsed
// as it arrives, and raw bytes on a TCP socket (for what a well-behaved client never sends).
import http from 'node:http';
import net from 'node:net';

/** How long a request may take unless the caller says otherwise. */
const DEFAULT_TIMEOUT_MS = 10_000;

export interface HttpRequestOptions {
  /** Local address for the client socket, e.g. '127.0.0.2' to appear as another host. */
  localAddress?: string;
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body's length on the wire (the benchmark reports response sizes). */
  bytes: number;
}

/**
 * One request on a fresh connection (no keep-alive pool, so localAddress always applies).
 * A number for `options` is the timeout alone.
 */
export function httpGet(url: string, options: HttpRequestOptions | number = {}): Promise<HttpResponse> {
  const { localAddress, method = 'GET', headers, timeoutMs = DEFAULT_TIMEOUT_MS } =
    typeof options === 'number' ? { timeoutMs: options } : options;
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, headers, localAddress, agent: false }, (response) => {
      // Decoded once at the end, so a character split across chunks survives.
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({ status: response.statusCode!, headers: response.headers, body: body.toString('utf8'), bytes: body.length });
      });
      response.on('error', fail);
    });
    const timer = setTimeout(
      () => request.destroy(new Error(`${method} ${url}: no complete response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    function fail(error: Error) {
      clearTimeout(timer);
      reject(error);
    }
    request.on('error', fail);
    request.end();
  });
}

export interface SseEvent {
  /** -1 when the event had no id line. */
  id: number;
  event: string;
  /** data lines joined by "\n"; "" when there was none (heartbeats). */
  data: string;
}

export interface EventStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every complete event received so far, in order. */
  events: SseEvent[];
  /** The whole body received so far, undecoded framing included. */
  raw(): string;
  /** True once the server has closed the stream (or it failed). */
  readonly ended: boolean;
  /** Resolves with the events once at least n have arrived. */
  waitForEvents(n: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** The first event, already received or still to come, for which `predicate` holds. */
  waitFor(predicate: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the server closes the stream. */
  waitForEnd(timeoutMs?: number): Promise<void>;
  close(): void;
}

/**
 * Parses lainlet's event-stream framing: `field: value` lines, an event ends at
 * an empty line. Lines end in a bare "\n" (a trailing "\r" is tolerated).
 */
class SseParser {
  private partialLine = '';
  private id = -1;
  private event = '';
  private dataLines: string[] = [];
  private hasFields = false;

  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  push(text: string): void {
    const lines = (this.partialLine + text).split('\n');
    this.partialLine = lines.pop()!;
    for (const rawLine of lines) this.line(rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.hasFields) this.onEvent({ id: this.id, event: this.event, data: this.dataLines.join('\n') });
      this.id = -1;
      this.event = '';
      this.dataLines = [];
      this.hasFields = false;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.hasFields = true;
    if (field === 'id') this.id = Number(value);
    else if (field === 'event') this.event = value;
    else if (field === 'data') this.dataLines.push(value);
  }
}

/**
 * GETs `url` and parses the body as an event stream while it arrives. Resolves
 * once the response headers are in (whatever the status: a 503 stream simply
 * has no events).
 */
export function openStream(
  url: string,
  { localAddress, headers, timeoutMs = DEFAULT_TIMEOUT_MS }: Omit<HttpRequestOptions, 'method'> = {},
): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { headers, localAddress, agent: false });
    const connectTimer = setTimeout(
      () => request.destroy(new Error(`GET ${url}: no response headers within ${timeoutMs} ms`)),
      timeoutMs,
    );
    request.once('error', (error) => {
      clearTimeout(connectTimer);
      reject(error);
    });
    request.once('response', (response) => {
      clearTimeout(connectTimer);
      resolve(new IncomingEventStream(url, request, response));
    });
    request.end();
  });
}

class IncomingEventStream implements EventStream {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly events: SseEvent[] = [];
  ended = false;
  private endReason = 'the server closed the stream';
  private rawText = '';
  /** Re-run on every event and at the end; each returns true once it is settled. */
  private readonly waiters = new Set<() => boolean>();

  constructor(
    private readonly url: string,
    private readonly request: http.ClientRequest,
    response: http.IncomingMessage,
  ) {
    this.status = response.statusCode!;
    this.headers = response.headers;
    const parser = new SseParser((event) => {
      this.events.push(event);
      this.notify();
    });
    response.setEncoding('utf8');
    response.on('data', (text: string) => {
      this.rawText += text;
      parser.push(text);
    });
    response.on('end', () => this.finish('the server closed the stream'));
    response.on('error', (error) => this.finish(`the stream failed: ${error.message}`));
    response.on('close', () => this.finish('the stream was closed'));
    // A request error after the response started (e.g. a reset) ends the stream, too.
    request.on('error', (error) => this.finish(`the stream failed: ${error.message}`));
  }

  raw(): string {
    return this.rawText;
  }

  waitForEvents(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SseEvent[]> {
    return this.waitUntil(() => (this.events.length >= n ? this.events : undefined), timeoutMs, `${n} events`);
  }

  waitFor(predicate: (event: SseEvent) => boolean, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SseEvent> {
    return this.waitUntil(() => this.events.find(predicate), timeoutMs, `an event matching ${predicate.toString()}`);
  }

  waitForEnd(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    return this.waitUntil(() => (this.ended ? true : undefined), timeoutMs, 'the end of the stream').then(() => {});
  }

  close(): void {
    this.request.destroy();
    this.finish('the client closed the stream');
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    this.notify();
  }

  private notify(): void {
    for (const settle of this.waiters) if (settle()) this.waiters.delete(settle);
  }

  private waitUntil<T>(check: () => T | undefined, timeoutMs: number, awaited: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const describe = () =>
        `${this.url}: ${this.events.length} events so far; body received:\n${this.rawText.slice(-2000)}`;
      const settle = (): boolean => {
        const result = check();
        if (result !== undefined) {
          clearTimeout(timer);
          resolve(result);
          return true;
        }
        if (this.ended) {
          clearTimeout(timer);
          reject(new Error(`${this.endReason} before ${awaited} arrived; ${describe()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(settle);
        reject(new Error(`no ${awaited} within ${timeoutMs} ms; ${describe()}`));
      }, timeoutMs);
      if (!settle()) this.waiters.add(settle);
    });
  }
}

export interface RawRequestOptions {
  localAddress?: string;
  /** Stop reading (and close the socket) after this long if the server has not closed it. */
  timeoutMs?: number;
}

/**
 * Writes `bytes` on a fresh TCP connection and returns everything read until the
 * server closes the connection or timeoutMs passes (whichever comes first).
 */
export function rawRequest(
  port: number,
  host: string,
  bytes: string,
  { localAddress, timeoutMs = 5000 }: RawRequestOptions = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // latin1 maps each byte to one character and back, so the bytes survive exactly
    // (and @types/node 20.9 Buffers do not type-check with Buffer.concat under TS 5.9).
    let received = '';
    const socket = net.connect({ port, host, localAddress });
    socket.setEncoding('latin1');
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.from(received, 'latin1'));
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (text: string) => (received += text));
    socket.on('end', done);
    socket.on('close', done);
    socket.on('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      // Data already read is still the answer when the server resets after writing it.
      if (received.length > 0) resolve(Buffer.from(received, 'latin1'));
      else reject(error);
    });
  });
}
