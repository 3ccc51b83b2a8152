// The benchmark's etcd: testkit's (../../testkit/etcd.ts), with its data in tmpfs when the machine
// has one (the benchmark measures lainlet, not the disk's fsync latency; RESULTS.md says where
// the data lived) and requests large enough for the 10 MB cluster in a few transactions.
import { startEtcd as startTestkitEtcd, type EtcdServer } from '../../testkit/etcd.js';

const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

export function startEtcd(): Promise<EtcdServer> {
  return startTestkitEtcd({ dataOnTmpfs: true, maxRequestBytes: MAX_REQUEST_BYTES });
}
