// Request/response over a forked child's IPC channel: the load generators (simulated agents,
// fan-out sinks) run in their own processes so their CPU work never delays the orchestrator's
// clocks, and the orchestrator drives them with small commands.
import type { ChildProcess } from 'node:child_process';
import { startNodeProgram as spawnNode, type Proc, type ProcOptions as SpawnOptions } from '../../testkit/procs.js';

interface Reply { id: number; ok: boolean; result?: unknown; error?: string }

export interface Remote {
  proc: Proc;
  call<T>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Asks the child to exit, then makes sure it did. */
  close(): Promise<void>;
}

export function startRemote(name: string, script: string, opts: SpawnOptions = {}): Remote {
  const proc = spawnNode(name, script, [], { ...opts, ipc: true });
  const child: ChildProcess = proc.proc;
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  child.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`${name}: ${m.error}`));
  });
  child.once('exit', (code, signal) => {
    for (const [, p] of pending) { clearTimeout(p.timer); p.reject(new Error(`${name} exited (code ${code}, signal ${signal}):\n${proc.output()}`)); }
    pending.clear();
  });
  return {
    proc,
    call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
      if (!proc.running) return Promise.reject(new Error(`${name} is not running:\n${proc.output()}`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => { pending.delete(id); reject(new Error(`${name}: ${cmd} timed out after ${timeoutMs} ms`)); }, timeoutMs);
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
        child.send({ id, cmd, ...args });
      });
    },
    async close() {
      if (proc.running) {
        try { child.send({ id: 0, cmd: 'exit' }); } catch { /* channel closed */ }
        await proc.stop('SIGTERM', 5000);
      }
    },
  };
}

/** The child side: answers commands with `handlers`; 'exit' ends the process. */
export function serveCommands(handlers: Record<string, (msg: Record<string, unknown>) => unknown>): void {
  process.on('message', (msg: Record<string, unknown> & { id: number; cmd: string }) => {
    if (msg.cmd === 'exit') { process.exit(0); }
    const handler = handlers[msg.cmd];
    void (async () => {
      try {
        if (!handler) throw new Error(`unknown command ${msg.cmd}`);
        const result = await handler(msg);
        process.send!({ id: msg.id, ok: true, result });
      } catch (e) {
        process.send!({ id: msg.id, ok: false, error: (e as Error).stack ?? String(e) });
      }
    })();
  });
  // The parent died: nothing left to do.
  process.on('disconnect', () => process.exit(0));
}
