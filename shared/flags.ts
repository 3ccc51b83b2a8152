// Command-line flags the way Go's flag package reads them, because the agent must accept the
// original lainlet's command line verbatim (`-web=:9001 -etcd=10.0.0.1:4001 -ip=... -debug`):
// one dash or two, `-name=value` or `-name value`, boolean flags without a value (or with
// `=true`/`=false`), and parsing stops at the first non-flag argument or at `--`.
//
// Beyond Go: int flags may declare a range (checked here, with the reason in the error), and a
// program can refuse what Go would leave in flag.Args() — the original lainlet ignored it, so
// `-noauth false -web :9002` silently meant -noauth and the default -web.
import { isIP } from 'node:net';

export interface FlagSpec {
  name: string;
  kind: 'string' | 'bool' | 'int';
  default?: string | boolean | number;
  help: string;
  /** int flags: the smallest and largest value accepted, and why (said when refusing). */
  min?: number;
  max?: number;
  why?: string;
}

/** The longest delay setTimeout honours: a larger one fires after 1 ms (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ParsedFlags {
  values: FlagValues;
  /** What Go leaves in flag.Args(): everything from the first non-flag argument (or after `--`). */
  rest: string[];
  /** The flags given on the command line (not defaulted). */
  set: Set<string>;
}

export type FlagValues = Record<string, string | boolean | number>;

export class FlagError extends Error {}

const BOOL_TEXT: Record<string, boolean> = {
  '1': true, t: true, T: true, true: true, TRUE: true, True: true,
  '0': false, f: false, F: false, false: false, FALSE: false, False: false,
};

/**
 * Parses argv as Go's flag package does. With `{ args: false }` anything left over (what Go
 * would leave in flag.Args()) is an error: this program takes flags only.
 */
export function parseFlags(argv: string[], specs: FlagSpec[], opts: { args?: boolean; dash?: '-' | '--' } = {}): ParsedFlags {
  const d = opts.dash ?? '-';
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: FlagValues = {};
  const set = new Set<string>();
  for (const s of specs) if (s.default !== undefined) values[s.name] = s.default;
  let i = 0;
  /** A boolean flag given without "=": what follows it is not its value (Go's rule). */
  let bareBool: string | undefined;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') { i++; bareBool = undefined; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    bareBool = undefined;
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    if (body === '' || body.startsWith('-') || body.startsWith('=')) throw new FlagError(`bad flag syntax: ${arg}`);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const spec = byName.get(name);
    if (!spec) throw new FlagError(`flag provided but not defined: ${d}${name}`);
    let text: string | undefined = eq < 0 ? undefined : body.slice(eq + 1);
    set.add(name);
    if (spec.kind === 'bool') {
      if (text === undefined) { values[name] = true; bareBool = name; continue; }
      const b = BOOL_TEXT[text];
      if (b === undefined) throw new FlagError(`invalid boolean value ${JSON.stringify(text)} for ${d}${name}`);
      values[name] = b;
      continue;
    }
    if (text === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: ${d}${name}`);
      text = argv[++i]!;
    }
    if (spec.kind === 'int') {
      if (!/^[+-]?\d+$/.test(text)) throw new FlagError(`invalid value ${JSON.stringify(text)} for flag ${d}${name}: parse error`);
      const n = Number(text);
      if (!Number.isSafeInteger(n)) throw new FlagError(`invalid value ${JSON.stringify(text)} for flag ${d}${name}: value out of range`);
      const why = spec.why ? ` (${spec.why})` : '';
      if (spec.min !== undefined && n < spec.min) throw new FlagError(`invalid value ${JSON.stringify(text)} for flag ${d}${name}: must be at least ${spec.min}${why}`);
      if (spec.max !== undefined && n > spec.max) throw new FlagError(`invalid value ${JSON.stringify(text)} for flag ${d}${name}: must be at most ${spec.max}${why}`);
      values[name] = n;
    } else {
      values[name] = text;
    }
  }
  const rest = argv.slice(i);
  if (opts.args === false && rest.length > 0) {
    const hint = bareBool !== undefined && BOOL_TEXT[rest[0]] !== undefined
      ? `: a boolean flag takes its value after "=", as in ${d}${bareBool}=${rest[0]}`
      : ': this program takes flags only';
    throw new FlagError(`unexpected argument ${JSON.stringify(rest[0])}${hint}`);
  }
  return { values, rest, set };
}

export function usage(program: string, specs: FlagSpec[], dash: '-' | '--' = '-'): string {
  const lines = [`Usage of ${program}:`];
  for (const s of specs) {
    const arg = s.kind === 'bool' ? '' : s.kind === 'int' ? ' int' : ' string';
    const notes: string[] = [];
    if (!(s.default === undefined || s.default === '' || s.default === false)) notes.push(`default ${JSON.stringify(s.default)}`);
    if (s.min !== undefined) notes.push(`at least ${s.min}`);
    if (s.max !== undefined && s.max !== MAX_TIMER_MS) notes.push(`at most ${s.max}`);
    lines.push(`  ${dash}${s.name}${arg}\n    \t${s.help}${notes.length ? ` (${notes.join(', ')})` : ''}`);
  }
  return lines.join('\n');
}

/** host:port with an IPv6 host in brackets; host and port as written. */
const AUTHORITY = /^(\[[0-9a-fA-F:.]+\]|[^\s:/?#@[\]]+):(\d+)$/;

function checkAuthority(authority: string, what: string, want: string): void {
  const m = AUTHORITY.exec(authority);
  if (!m) throw new FlagError(`invalid ${what}: want ${want}`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new FlagError(`invalid ${what}: port ${m[2]} is not 1-65535`);
  if (m[1].startsWith('[') && isIP(m[1].slice(1, -1)) !== 6) throw new FlagError(`invalid ${what}: ${m[1]} is not an IPv6 address`);
}

/**
 * "a:1,http://b:2" → ["http://a:1", "http://b:2"]: the etcd endpoint list, with or without
 * http://. Anything else — another scheme, no port or a port that is not 1-65535, a path — is
 * refused here: the etcd client would retry it forever, reporting "circuit breaker is open".
 */
export function parseEndpoints(list: string, flag = '-etcd'): string[] {
  const want = 'host:port, http://host:port or https://host:port';
  return list.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const what = `${flag} endpoint ${JSON.stringify(s)}`;
    const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(s);
    const scheme = m ? m[1].toLowerCase() : 'http';
    if (scheme !== 'http' && scheme !== 'https') throw new FlagError(`invalid ${what}: the scheme must be http or https`);
    const authority = (m ? m[2] : s).replace(/\/$/, '');
    checkAuthority(authority, what, want);
    return `${scheme}://${authority}`;
  });
}

/** "ws://a:1,wss://b:2/path" → the hub list; each a ws:// or wss:// URL with host and port. */
export function parseHubAddresses(list: string, flag = '-hub'): string[] {
  return list.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const what = `${flag} address ${JSON.stringify(s)}`;
    const m = /^(wss?):\/\/([^/?#]*)([/?#].*)?$/i.exec(s);
    if (!m) throw new FlagError(`invalid ${what}: it must start with ws:// or wss://`);
    checkAuthority(m[2], what, 'ws://host:port or wss://host:port');
    return s;
  });
}

/** The agent's -ip: empty, or an IPv4 or IPv6 address. */
export function checkIp(ip: string, flag = '-ip'): string {
  if (ip !== '' && isIP(ip) === 0) throw new FlagError(`invalid value ${JSON.stringify(ip)} for flag ${flag}: not an IP address`);
  return ip;
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
