import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const HUB_SCRIPT = fileURLToPath(new URL('../../dist/hub/main.js', import.meta.url));
export const AGENT_SCRIPT = fileURLToPath(new URL('../../dist/agent/main.js', import.meta.url));

/** How many lines of a program's output are kept for error messages and waitForLine. */
const RETAINED_OUTPUT_LINES = 200;
const DEFAULT_WAIT_MS = 10_000;
/** After a program exits, how long to wait for the rest of its output to be read. */
const LAST_OUTPUT_WAIT_MS = 2_000;

// ---------------------------------------------------------------------------
// Children die with the test process
// ---------------------------------------------------------------------------

const runningChildren = new Set<ChildProcess>();

// A test that fails (or a worker that exits early) must not leave etcd, hubs or
// agents running: they would hold ports and temp dirs for the rest of the run.
process.on('exit', () => {
  for (const child of runningChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGKILL `child` when the test process exits, unless it has exited by then. */
export function killWithTestProcess(child: ChildProcess): void {
  if (hasExited(child)) return;
  runningChildren.add(child);
  child.once('exit', () => runningChildren.delete(child));
}

/** Resolves true when `child` has exited, false if it is still running after timeoutMs. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    child.once('exit', onExit);
  });
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

export interface WaitForOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Says what was awaited; the timeout error starts with it. */
  message?: string;
}

/**
 * Polls `condition` until it returns true. A throwing condition counts as "not
 * yet" (e.g. connection refused while a server starts); the last error is
 * quoted in the timeout error.
 */
export async function waitFor(
  condition: () => Promise<boolean> | boolean,
  { timeoutMs = DEFAULT_WAIT_MS, intervalMs = 50, message = 'condition' }: WaitForOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await condition()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? String(lastError) : JSON.stringify(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// ---------------------------------------------------------------------------
// The project's programs
// ---------------------------------------------------------------------------

export interface ProcOptions {
  /** Added to (and overriding) the test process's environment. */
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export interface Proc {
  proc: ChildProcess;
  pid: number;
  /** The last ~200 lines of stdout and stderr, interleaved as they arrived. */
  output(): string;
  /** The first output line matching `re` (already printed or still to come). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (null when a signal ended it) once the program exits. */
  waitForExit(timeoutMs?: number): Promise<number | null>;
  /**
   * Sends `signal` and waits for the exit code (null when a signal ended it).
   * A program still running after timeoutMs is SIGKILLed and the call throws.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  kill(): Promise<void>;
}

export function startHub(args: string[], opts?: ProcOptions): Proc {
  return startNodeProgram('hub', HUB_SCRIPT, args, opts);
}

export function startAgent(args: string[], opts?: ProcOptions): Proc {
  return startNodeProgram('agent', AGENT_SCRIPT, args, opts);
}

/** Runs `node <script> ...args`; `name` labels the program in error messages. */
export function startNodeProgram(name: string, script: string, args: string[], opts: ProcOptions = {}): Proc {
  if (!existsSync(script)) {
    throw new Error(`${script} does not exist: run \`npm run build\` before the tests`);
  }
  const child = spawn(process.execPath, [script, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killWithTestProcess(child);
  const label = `${name} (pid ${child.pid})`;
  const pipesClosed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  /**
   * 'exit' can come before the last output is read; 'close' waits for the pipes.
   * Bounded, because a grandchild that inherited them could keep them open.
   */
  const waitForLastOutput = () =>
    Promise.race([pipesClosed, new Promise((resolve) => setTimeout(resolve, LAST_OUTPUT_WAIT_MS).unref())]);

  const recentLines: string[] = [];
  const lineWatchers = new Set<(line: string) => void>();
  const onLine = (line: string) => {
    recentLines.push(line);
    if (recentLines.length > RETAINED_OUTPUT_LINES) recentLines.shift();
    for (const watcher of lineWatchers) watcher(line);
  };
  for (const stream of [child.stdout, child.stderr]) {
    let partialLine = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (partialLine + chunk).split('\n');
      partialLine = lines.pop()!;
      for (const line of lines) onLine(line);
    });
    stream.on('end', () => {
      if (partialLine !== '') onLine(partialLine);
      partialLine = '';
    });
  }

  const output = () => recentLines.join('\n');
  const describeExit = () =>
    child.signalCode !== null ? `signal ${child.signalCode}` : `code ${child.exitCode}`;

  const waitForLine = (re: RegExp, timeoutMs = DEFAULT_WAIT_MS): Promise<string> => {
    const seen = recentLines.find((line) => re.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        lineWatchers.delete(onNewLine);
        child.off('exit', onExit);
      };
      const onNewLine = (line: string) => {
        if (!re.test(line)) return;
        finish();
        resolve(line);
      };
      const onExit = () =>
        void waitForLastOutput().then(() => {
          finish();
          reject(new Error(`${label} exited (${describeExit()}) before printing a line matching ${re}; output:\n${output()}`));
        });
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${label} printed no line matching ${re} within ${timeoutMs} ms; output:\n${output()}`));
      }, timeoutMs);
      lineWatchers.add(onNewLine);
      if (hasExited(child)) onExit();
      else child.once('exit', onExit);
    });
  };

  const waitForProgramExit = async (timeoutMs = DEFAULT_WAIT_MS): Promise<number | null> => {
    if (!(await waitForExit(child, timeoutMs))) {
      throw new Error(`${label} still running after ${timeoutMs} ms; output:\n${output()}`);
    }
    await waitForLastOutput();
    return child.exitCode;
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5000): Promise<number | null> => {
    if (!hasExited(child)) child.kill(signal);
    if (await waitForExit(child, timeoutMs)) {
      await waitForLastOutput();
      return child.exitCode;
    }
    child.kill('SIGKILL');
    await waitForExit(child, timeoutMs);
    await waitForLastOutput();
    throw new Error(`${label} did not exit within ${timeoutMs} ms of ${signal} (SIGKILLed); output:\n${output()}`);
  };

  const kill = async (): Promise<void> => {
    if (!hasExited(child)) child.kill('SIGKILL');
    await waitForExit(child, DEFAULT_WAIT_MS);
    await waitForLastOutput();
  };

  return { proc: child, pid: child.pid!, output, waitForLine, waitForExit: waitForProgramExit, stop, kill };
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

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
}

/** One request on a fresh connection (no keep-alive pool, so localAddress always applies). */
export function httpGet(
  url: string,
  { localAddress, method = 'GET', headers, timeoutMs = DEFAULT_WAIT_MS }: HttpRequestOptions = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, headers, localAddress, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (text: string) => (body += text));
      response.on('end', () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode!, headers: response.headers, body });
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
  { localAddress, headers, timeoutMs = DEFAULT_WAIT_MS }: Omit<HttpRequestOptions, 'method'> = {},
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

  waitForEvents(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<SseEvent[]> {
    return this.waitUntil(() => (this.events.length >= n ? this.events : undefined), timeoutMs, `${n} events`);
  }

  waitFor(predicate: (event: SseEvent) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<SseEvent> {
    return this.waitUntil(() => this.events.find(predicate), timeoutMs, `an event matching ${predicate.toString()}`);
  }

  waitForEnd(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
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
