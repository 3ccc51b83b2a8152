// Hubs and agents the soak can SIGKILL, SIGTERM, SIGSTOP/SIGCONT and restart, each restart a
// new "incarnation". An exit the soak did not ask for is reported.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpGet } from '../../testkit/http.js';
import { startAgent, startHub, type Proc } from '../../testkit/procs.js';

/** LAINLET_SOAK_LOGS=DIR keeps every hub's and agent's whole output there, one file each. */
const LOG_DIR = process.env.LAINLET_SOAK_LOGS;

export type ProcState = 'up' | 'stopped' | 'down';
export type EndedBy = 'kill' | 'term';

export class ManagedProc {
  proc: Proc | undefined;
  state: ProcState = 'down';
  /** 1 for the first start, +1 per restart. */
  incarnation = 0;
  /** How the previous incarnation ended. */
  lastEndedBy: EndedBy | undefined;
  /** endings[i]: how incarnation i ended (a crash counts as a kill). */
  private readonly endings: EndedBy[] = [];
  /** True while the soak is stopping or killing it: its exit is expected. */
  private exiting = false;
  /** The exit of the current incarnation, when it happened. */
  private exitInfo: string | undefined;
  /**
   * The current incarnation has said it is listening: its SIGTERM handler is installed from
   * then on. A SIGTERM before that (node still loading its modules, the state file, the port)
   * ends it by the signal, as for any process — harmless, it holds nothing to save yet.
   */
  private listening = false;

  constructor(
    readonly name: string,
    readonly kind: 'hub' | 'agent',
    readonly port: number,
    readonly args: string[],
    private readonly onUnexpectedExit: (name: string, detail: string) => void,
  ) {}

  start(): void {
    if (this.state !== 'down') throw new Error(`${this.name} is ${this.state}, not down`);
    const proc = this.kind === 'hub' ? startHub(this.args) : startAgent(this.args);
    this.proc = proc;
    this.incarnation++;
    this.exiting = false;
    this.exitInfo = undefined;
    this.listening = false;
    this.state = 'up';
    const incarnation = this.incarnation;
    const watchForListening = (chunk: Buffer) => {
      if (this.incarnation !== incarnation || !/"msg":"(agent|hub) listening"/.test(chunk.toString())) return;
      this.listening = true;
      proc.proc.stdout?.off('data', watchForListening);
    };
    proc.proc.stdout?.on('data', watchForListening);
    if (LOG_DIR) {
      const file = join(LOG_DIR, `${this.name}.log`);
      const keep = (chunk: Buffer) => appendFileSync(file, chunk);
      proc.proc.stdout?.on('data', keep);
      proc.proc.stderr?.on('data', keep);
    }
    proc.proc.once('exit', (code, signal) => {
      this.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      if (this.incarnation !== incarnation) return;
      const expected = this.exiting;
      this.state = 'down';
      if (!expected) this.lastEndedBy = 'kill';
      this.endings[incarnation] = this.lastEndedBy ?? 'kill';
      if (!expected) this.onUnexpectedExit(this.name, `${this.name} (incarnation ${incarnation}) exited by itself (${this.exitInfo}); last output:\n${tail(proc.output())}`);
    });
  }

  /** True from the moment the soak signals it to exit until it has restarted. */
  get leaving(): boolean {
    return this.exiting;
  }

  /** True when one of the incarnations from..to-1 ended without a chance to save its state. */
  killedBetween(from: number, to: number): boolean {
    for (let i = Math.max(1, from); i < to; i++) if (this.endings[i] !== 'term') return true;
    return false;
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<void> {
    if (this.state === 'down' || !this.proc) return;
    this.exiting = true;
    this.lastEndedBy = 'kill';
    await this.proc.kill();
    this.state = 'down';
  }

  /** SIGTERM and wait for the exit; returns a problem description when it was not clean. */
  async term(timeoutMs = 10_000): Promise<string | undefined> {
    if (this.state === 'down' || !this.proc) return undefined;
    if (this.state === 'stopped') this.cont();
    this.exiting = true;
    this.lastEndedBy = 'term';
    const proc = this.proc;
    try {
      const code = await proc.stop('SIGTERM', timeoutMs);
      this.state = 'down';
      if (code !== 0 && !this.listening && this.exitInfo === 'signal SIGTERM') return undefined;
      return code === 0 ? undefined : `${this.name} exited with ${this.exitInfo ?? `code ${code}`} on SIGTERM; last output:\n${tail(proc.output())}`;
    } catch (error) {
      this.state = 'down';
      this.lastEndedBy = 'kill';
      return `${this.name}: ${(error as Error).message.split('\n')[0]} (SIGKILLed)`;
    }
  }

  stop(): void {
    if (this.state !== 'up' || !this.proc) return;
    this.proc.proc.kill('SIGSTOP');
    this.state = 'stopped';
  }

  cont(): void {
    if (this.state !== 'stopped' || !this.proc) return;
    this.proc.proc.kill('SIGCONT');
    this.state = 'up';
  }

  /** SIGCONT if stopped, start if down. */
  ensureUp(): void {
    if (this.state === 'stopped') this.cont();
    else if (this.state === 'down') this.start();
  }

  /** The last lines of the current incarnation's output, without the lines `without` matches. */
  output(without?: RegExp): string {
    if (!this.proc) return '';
    const text = this.proc.output();
    return tail(without ? text.split('\n').filter((l) => !without.test(l)).join('\n') : text);
  }
}

export function tail(text: string, lines = 12): string {
  return text.trimEnd().split('\n').slice(-lines).map((l) => `    | ${l.slice(0, 400)}`).join('\n');
}

/** What /healthz answers (status and body), or why it could not be read. */
export async function hubHealth(port: number): Promise<string> {
  try {
    const res = await httpGet(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 1000 });
    return `${res.status} ${res.body}`;
  } catch (error) {
    return (error as Error).message;
  }
}

export async function hubHealthy(port: number): Promise<boolean> {
  try { return (await httpGet(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 1000 })).status === 200; } catch { return false; }
}
