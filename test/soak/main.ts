// npm run soak -- --seconds S --seed N [--converge-ms MS] [--faults KIND,… | none] [--etcd-members 3] [--verbose]
// The checker's findings (if any), then one verdict line; exit code 1 on findings, 2 when the
// soak could not run at all.
import { ALL_FAULT_KINDS } from './faults.js';
import { abortSoaks, runSoak } from './run.js';

function usage(): never {
  process.stderr.write('usage: npm run soak -- [--seconds S (default 60)] [--seed N (default: random)] [--converge-ms MS (default 30000)] [--faults KIND,KIND… | none] [--etcd-members 1|3|5] [--verbose]\n');
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const out: { seconds: number; seed: number; convergeMs: number; verbose: boolean; kinds?: string[]; etcdMembers: number } = { etcdMembers: 1, seconds: 60, seed: Math.floor(Math.random() * 2 ** 31), convergeMs: 30_000, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || !/^\d+$/.test(v)) usage();
      return Number(v);
    };
    if (name === '--seconds') out.seconds = value();
    else if (name === '--seed') out.seed = value();
    else if (name === '--converge-ms') out.convergeMs = value();
    else if (name === '--etcd-members') out.etcdMembers = value();
    else if (name === '--verbose' || name === '-v') out.verbose = true;
    else if (name === '--faults') {
      const v = inline ?? argv[++i];
      if (v === undefined) usage();
      out.kinds = v === 'none' ? [] : v.split(',');
      for (const k of out.kinds) if (!ALL_FAULT_KINDS.has(k)) { process.stderr.write(`unknown fault kind ${k}; kinds: ${[...ALL_FAULT_KINDS].join(' ')}\n`); process.exit(2); }
    }
    else usage();
  }
  if (out.seconds < 5) { process.stderr.write('--seconds must be at least 5\n'); process.exit(2); }
  return out;
}

const args = parseArgs(process.argv.slice(2));
// Ctrl-C: stop every child and remove the temp dirs, then exit (the helpers' exit handlers
// SIGKILL whatever is left if that takes too long).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`soak: ${signal}, cleaning up\n`);
    setTimeout(() => process.exit(130), 15_000).unref();
    void abortSoaks().finally(() => process.exit(130));
  });
}

try {
  const result = await runSoak({
    seconds: args.seconds,
    seed: args.seed,
    convergeMs: args.convergeMs,
    kinds: args.kinds,
    etcdMembers: args.etcdMembers,
    log: args.verbose ? (line) => process.stderr.write(`soak ${line}\n`) : undefined,
  });
  for (const line of result.findings) process.stdout.write(`${line}\n`);
  process.stdout.write(`${result.verdict}\n`);
  process.exit(result.ok ? 0 : 1);
} catch (error) {
  process.stdout.write(`SOAK ERROR seed=${args.seed} seconds=${args.seconds}: ${(error as Error).stack ?? String(error)}\nreplay: npm run soak -- --seconds ${args.seconds} --seed ${args.seed}\n`);
  process.exit(2);
}
