// The store a program's --store (or the agent's -store) names, and the memory store's seed file.
import { readFileSync } from 'node:fs';
import { Etcd2Store } from './etcd2.js';
import { Etcd3Store } from './etcd3.js';
import { MemoryStore } from './memory.js';
import type { Store } from './types.js';

/**
 * Reads a seed file shaped like demo/cluster.json — {"kvs": {key: value}}, beside which other
 * members ("about") are ignored — or a flat {key: value} object. Only keys that start with "/"
 * and have string values are kept: the rest are comments ("_comment") or not etcd values.
 */
export function readSeedFile(file: string): Record<string, string> {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const kvs = (parsed.kvs && typeof parsed.kvs === 'object' ? parsed.kvs : parsed) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(kvs)) {
    if (k.startsWith('/') && typeof v === 'string') out[k] = v;
  }
  return out;
}

export function createStore(opts: { kind: string; endpoints: string[]; seedFile?: string }): Store {
  switch (opts.kind) {
    case 'etcd':
    case 'etcd3':
      if (opts.endpoints.length === 0) throw new Error('--etcd is required with --store etcd');
      return new Etcd3Store({ endpoints: opts.endpoints });
    case 'etcd2':
      if (opts.endpoints.length === 0) throw new Error('--etcd is required with --store etcd2');
      return new Etcd2Store({ endpoints: opts.endpoints });
    case 'memory':
      return new MemoryStore(opts.seedFile ? readSeedFile(opts.seedFile) : undefined);
    default:
      throw new Error(`unknown store ${JSON.stringify(opts.kind)}: want etcd, etcd2 or memory`);
  }
}
