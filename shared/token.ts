// The bearer token between agents and hubs: read from a file (so it never shows in `ps`),
// compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

export function readToken(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`token in ${file} is shorter than 16 characters`);
  return token;
}

/** Checks an Authorization header value against the token without leaking timing. */
export function tokenChecker(token: string): (authorization: string) => boolean {
  const want = createHash('sha256').update(token).digest();
  return (authorization) => {
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    const got = createHash('sha256').update(m ? m[1]! : '').digest();
    return timingSafeEqual(want, got) && m !== null;
  };
}
