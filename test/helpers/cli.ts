// Running the programs as an operator would, to see how they refuse what they cannot run with:
// stdout and stderr apart, the exit code, and whether the program started instead.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { killWithTestProcess } from '../../testkit/procs.js';

export const SCRIPTS = {
  hub: fileURLToPath(new URL('../../dist/hub/main.js', import.meta.url)),
  agent: fileURLToPath(new URL('../../dist/agent/main.js', import.meta.url)),
  demo: fileURLToPath(new URL('../../dist/demo/main.js', import.meta.url)),
};

/** What each program prints once it serves: the hub's and agent's log lines, the demo's banner. */
export const STARTED = /"msg":"(hub|agent) listening"|^lainlet demo:/m;

export interface Run {
  /** Exit code; null when it was killed (after starting, or at the deadline). */
  code: number | null;
  stdout: string;
  stderr: string;
  /** It printed STARTED (and was then killed): it ran with what it should have refused. */
  started: boolean;
}

// Two programs at a time: a table of refusals must not load a 2-core machine shared with others.
let running = 0;
const queue: Array<() => void> = [];
async function slot<T>(f: () => Promise<T>): Promise<T> {
  if (running >= 2) await new Promise<void>((resolve) => queue.push(resolve));
  running++;
  try { return await f(); } finally { running--; queue.shift()?.(); }
}

/**
 * Runs `node <program> ...args` to its exit, or until it prints STARTED (then kills it).
 * `deadlineMs` only bounds a program that neither exits nor starts (a hang is a failure too).
 */
export function run(program: keyof typeof SCRIPTS, args: string[], opts: { env?: Record<string, string>; deadlineMs?: number } = {}): Promise<Run> {
  const script = SCRIPTS[program];
  if (!existsSync(script)) throw new Error(`${script} does not exist: run \`npm run build\` before the tests`);
  return slot(() => new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    killWithTestProcess(child);
    let stdout = '';
    let stderr = '';
    let started = false;
    const deadline = setTimeout(() => { stderr += `\n[test: still running after ${opts.deadlineMs ?? 20_000} ms, killed]`; child.kill('SIGKILL'); }, opts.deadlineMs ?? 20_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (!started && STARTED.test(stdout)) { started = true; child.kill('SIGKILL'); }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.once('close', (code) => { clearTimeout(deadline); resolve({ code, stdout, stderr, started }); });
  }));
}

/** The JSON log lines a program printed on stdout. */
export function logLines(stdout: string): Array<Record<string, unknown>> {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}
