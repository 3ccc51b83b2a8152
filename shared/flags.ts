// Command-line flags the way Go's flag package reads them, because the agent must accept the
// original lainlet's command line verbatim (`-web=:9001 -etcd=10.0.0.1:4001 -ip=... -debug`):
// one dash or two, `-name=value` or `-name value`, boolean flags without a value (or with
// `=true`/`=false`), and parsing stops at the first non-flag argument or at `--`.

export interface FlagSpec {
  name: string;
  kind: 'string' | 'bool' | 'int';
  default?: string | boolean | number;
  help: string;
}

export type FlagValues = Record<string, string | boolean | number>;

export class FlagError extends Error {}

const BOOL_TEXT: Record<string, boolean> = {
  '1': true, t: true, T: true, true: true, TRUE: true, True: true,
  '0': false, f: false, F: false, false: false, FALSE: false, False: false,
};

export function parseFlags(argv: string[], specs: FlagSpec[]): { values: FlagValues; rest: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: FlagValues = {};
  for (const s of specs) if (s.default !== undefined) values[s.name] = s.default;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { i++; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    if (body === '' || body.startsWith('-') || body.startsWith('=')) throw new FlagError(`bad flag syntax: ${arg}`);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const spec = byName.get(name);
    if (!spec) throw new FlagError(`flag provided but not defined: -${name}`);
    let text: string | undefined = eq < 0 ? undefined : body.slice(eq + 1);
    if (spec.kind === 'bool') {
      if (text === undefined) { values[name] = true; continue; }
      const b = BOOL_TEXT[text];
      if (b === undefined) throw new FlagError(`invalid boolean value ${JSON.stringify(text)} for -${name}`);
      values[name] = b;
      continue;
    }
    if (text === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
      text = argv[++i]!;
    }
    if (spec.kind === 'int') {
      if (!/^[+-]?\d+$/.test(text)) throw new FlagError(`invalid value ${JSON.stringify(text)} for flag -${name}: parse error`);
      values[name] = Number(text);
    } else {
      values[name] = text;
    }
  }
  return { values, rest: argv.slice(i) };
}

export function usage(program: string, specs: FlagSpec[]): string {
  const lines = [`Usage of ${program}:`];
  for (const s of specs) {
    const arg = s.kind === 'bool' ? '' : s.kind === 'int' ? ' int' : ' string';
    const def = s.default === undefined || s.default === '' || s.default === false ? '' : ` (default ${JSON.stringify(s.default)})`;
    lines.push(`  -${s.name}${arg}\n    \t${s.help}${def}`);
  }
  return lines.join('\n');
}

/** "a:1,http://b:2" → ["http://a:1", "http://b:2"]: the etcd endpoint list, with or without http://. */
export function parseEndpoints(list: string, scheme = 'http'): string[] {
  return list.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (/^[a-z]+:\/\//i.test(s) ? s : `${scheme}://${s}`));
}

/** ":9001" → {host: "0.0.0.0"... } — Go's listen address syntax; an empty host means all interfaces. */
export function parseListenAddress(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(addr.trim());
  if (!m) throw new FlagError(`invalid listen address ${JSON.stringify(addr)}: want host:port or :port`);
  const port = Number(m[3]);
  if (port > 65535) throw new FlagError(`invalid port in ${JSON.stringify(addr)}`);
  const host = m[1] ?? m[2] ?? '';
  return { host, port };
}
