// Child processes for the tests and the benchmark: etcd, hubs, agents, load generators. Each is
// killed with the process that started it, and keeps its recent output for error messages.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { AGENT_SCRIPT, HUB_SCRIPT, REPO_ROOT } from './paths.js';

/** How many lines of a program's output are kept for error messages and waitForLine, unless told. */
const RETAINED_OUTPUT_LINES = 200;
const DEFAULT_WAIT_MS = 10_000;
/**
 * How long stop() waits after its signal before SIGKILL. An agent saves its state file on
 * SIGTERM, which for the benchmark's 10 MB cluster on a loaded machine takes seconds.
 */
const GRACEFUL_EXIT_MS = 10_000;
/** After a program exits, how long to wait for the rest of its output to be read. */
const LAST_OUTPUT_WAIT_MS = 2_000;

// ---------------------------------------------------------------------------
// Children die with this process
// ---------------------------------------------------------------------------

const runningChildren = new Set<ChildProcess>();

// A test that fails (or a worker, or a benchmark, that exits early) must not leave etcd, hubs
// or agents running: they would hold ports, temp dirs and CPU for the rest of the run.
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
  // A child that could not be spawned at all gets a (negative) exitCode and never emits 'exit'.
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGKILL `child` when this (test or benchmark) process exits, unless it has exited by then. */
export function killWithTestProcess(child: ChildProcess): void {
  if (hasExited(child)) return;
  runningChildren.add(child);
  child.once('exit', () => runningChildren.delete(child));
}

/** SIGKILLs every child still running and waits for them to go (the benchmark, between measurements and on Ctrl-C). */
export async function killAll(): Promise<void> {
  const children = [...runningChildren];
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all(children.map((child) => waitForExit(child, DEFAULT_WAIT_MS)));
}

/** Resolves true when `child` has exited, false if it is still running after timeoutMs. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (exited: boolean) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('error', onError);
      resolve(exited);
    };
    const onExit = () => finish(true);
    // A failed spawn ends in 'error', not 'exit'.
    const onError = () => {
      if (hasExited(child)) finish(true);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    child.once('exit', onExit);
    child.on('error', onError);
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
// Programs
// ---------------------------------------------------------------------------

export interface ProcOptions {
  /** Added to (and overriding) this process's environment; an undefined value removes a variable. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Node options before the script (startNodeProgram only), e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Open an IPC channel (child_process.fork style): the child can process.send(). */
  ipc?: boolean;
  /** Keep this many lines of output for error messages (default 200). */
  keepLines?: number;
}

export interface Proc {
  /** Labels the program in error messages. */
  name: string;
  proc: ChildProcess;
  pid: number;
  /** False once the program has exited (or could not be started). */
  readonly running: boolean;
  /** Why the program could not be started (e.g. ENOENT), if it could not. */
  readonly spawnError: Error | undefined;
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

/** Runs `node [...nodeArgs] <script> ...args`; `script` is one of the built programs. */
export function startNodeProgram(name: string, script: string, args: string[], opts: ProcOptions = {}): Proc {
  if (!existsSync(script)) {
    throw new Error(`${script} does not exist: run \`npm run build\` first`);
  }
  return startProgram(name, process.execPath, [...(opts.nodeArgs ?? []), script, ...args], opts);
}

/** Runs `command` with its output piped and kept; `name` labels the program in error messages. */
export function startProgram(name: string, command: string, args: string[], opts: ProcOptions = {}): Proc {
  const stdio: StdioOptions = opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'];
  const child = spawn(command, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio,
  });
  killWithTestProcess(child);
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError ??= error));
  const label = `${name} (pid ${child.pid})`;
  const keepLines = opts.keepLines ?? RETAINED_OUTPUT_LINES;
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
    if (recentLines.length > keepLines) recentLines.shift();
    for (const watcher of lineWatchers) watcher(line);
  };
  for (const stream of [child.stdout!, child.stderr!]) {
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
  const describeExit = () => {
    if (spawnError) return `could not start: ${spawnError.message}`;
    return child.signalCode !== null ? `signal ${child.signalCode}` : `code ${child.exitCode}`;
  };

  const waitForLine = (re: RegExp, timeoutMs = DEFAULT_WAIT_MS): Promise<string> => {
    const seen = recentLines.find((line) => re.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        lineWatchers.delete(onNewLine);
        child.off('exit', onExit);
        child.off('error', onError);
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
      // A failed spawn ends in 'error', not 'exit'.
      const onError = () => {
        if (hasExited(child)) onExit();
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${label} printed no line matching ${re} within ${timeoutMs} ms; output:\n${output()}`));
      }, timeoutMs);
      lineWatchers.add(onNewLine);
      if (hasExited(child)) onExit();
      else {
        child.once('exit', onExit);
        child.on('error', onError);
      }
    });
  };

  const waitForProgramExit = async (timeoutMs = DEFAULT_WAIT_MS): Promise<number | null> => {
    if (!(await waitForExit(child, timeoutMs))) {
      throw new Error(`${label} still running after ${timeoutMs} ms; output:\n${output()}`);
    }
    await waitForLastOutput();
    return child.exitCode;
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = GRACEFUL_EXIT_MS): Promise<number | null> => {
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

  return {
    name,
    proc: child,
    pid: child.pid!,
    get running() {
      return !hasExited(child);
    },
    get spawnError() {
      return spawnError;
    },
    output,
    waitForLine,
    waitForExit: waitForProgramExit,
    stop,
    kill,
  };
}

/** Runs a command to completion and returns its output (the benchmark: wrk, node -e). */
export function runCommand(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    killWithTestProcess(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
