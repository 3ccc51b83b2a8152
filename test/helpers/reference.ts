// The vendored reference material (test/reference/: fixtures and golden answers of the original).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Absolute path of a file under test/reference/, e.g. "golden/cluster-small.json". */
export function referencePath(rel: string): string {
  return fileURLToPath(new URL(`../reference/${rel}`, import.meta.url));
}

export function readReference(rel: string): string {
  return readFileSync(referencePath(rel), 'utf8');
}

export function readReferenceJson<T = unknown>(rel: string): T {
  return JSON.parse(readReference(rel)) as T;
}
