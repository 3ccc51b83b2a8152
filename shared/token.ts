// The bearer token between agents and hubs: read from a file (so it never shows in `ps`),
// compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

export function readToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new Error(`cannot read token file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (token.length < 16) throw new Error(`token in ${file} is shorter than 16 characters`);
  return token;
}

/**
 * Why the token file's mode is unsafe, or undefined: a file every user of the machine may read
 * (or write) gives the token — and so the whole Lain keyspace, secrets included — to all of
 * them. Group-readable is the intended setup (install -m 0640 -o root -g lainlet).
 */
export function tokenFileWarning(file: string): { msg: string; file: string; mode: string } | undefined {
  let mode: number;
  try { mode = statSync(file).mode & 0o7777; } catch { return undefined; }
  if ((mode & 0o006) === 0) return undefined;
  const octal = `0${mode.toString(8).padStart(3, '0')}`;
  const what = [mode & 0o004 ? 'readable' : '', mode & 0o002 ? 'writable' : ''].filter(Boolean).join(' and ');
  return { file, mode: octal, msg: `token file ${file} is ${what} by every user (mode ${octal}): chmod o-rw ${file} (install -m 0640 -o root -g lainlet)` };
}

/** Checks an Authorization header value against the token without leaking timing. */
export function tokenChecker(token: string): (authorization: string) => boolean {
  const want = createHash('sha256').update(token).digest();
  return (authorization) => {
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    const got = createHash('sha256').update(m ? m[1] : '').digest();
    return timingSafeEqual(want, got) && m !== null;
  };
}
