// The sample clusters (etcd key → value, as deployd writes them): test/reference/fixtures.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The fixtures vendored into the repository (test/reference), else the reference folder beside the checkout. */
const FIXTURE_DIRS = [
  fileURLToPath(new URL('../../../test/reference/fixtures/', import.meta.url)),
  fileURLToPath(new URL('../../../../shared/fixtures/', import.meta.url)),
];

export function readFixture(name: 'cluster-small' | 'edge-cases'): Record<string, string> {
  const dir = FIXTURE_DIRS.find((d) => existsSync(path.join(d, `${name}.json`)));
  if (!dir) throw new Error(`fixture ${name}.json not found in ${FIXTURE_DIRS.join(' or ')}`);
  const parsed = JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8')) as { kvs?: Record<string, unknown> };
  const kvs = (parsed.kvs ?? parsed) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(kvs).filter(([k, v]) => k.startsWith('/') && typeof v === 'string')) as Record<string, string>;
}
