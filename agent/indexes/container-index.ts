// Containers under `<NodeName>/<Id>` and `<NodeIp>/<Id>` (lainlet's container watcher), derived
// from the pod groups. A pod-group change touches only that pod group's container keys.
import type { ChangedKey } from './changes.js';
import type { PodGroup } from '../model/podgroup.js';
import { Claims } from './claims.js';
import type { ContainerEntry, ContainerInfo } from './entries.js';
import { KeyedIndex } from './keyed-index.js';

/** Every (key, info) a pod group contributes; a key listed twice keeps its last info, as in lainlet. */
function containersOf(pg: PodGroup): Map<string, ContainerInfo> {
  const out = new Map<string, ContainerInfo>();
  for (const pod of pg.pods) {
    for (const c of pod.containers) {
      const info: ContainerInfo = {
        app: pg.namespace,
        appVersion: pg.appVersion,
        proc: pg.name,
        nodeName: c.nodeName,
        nodeIp: c.nodeIp,
        ip: c.containerIp,
        port: c.containerPort,
        instanceNo: pod.instanceNo,
      };
      out.set(`${c.nodeName}/${c.id}`, info);
      out.set(`${c.nodeIp}/${c.id}`, info);
    }
  }
  return out;
}

function sameInfo(a: ContainerInfo, b: ContainerInfo): boolean {
  return a.app === b.app && a.appVersion === b.appVersion && a.proc === b.proc && a.nodeName === b.nodeName
    && a.nodeIp === b.nodeIp && a.ip === b.ip && a.port === b.port && a.instanceNo === b.instanceNo;
}

export class ContainerIndex {
  readonly entries = new KeyedIndex<ContainerEntry>();
  private readonly claims = new Claims<ContainerInfo>();

  /** Records pod group `pgKey`'s change from `before` to `after` (either may be absent); returns the container keys whose entry changed. */
  update(pgKey: string, before: PodGroup | undefined, after: PodGroup | undefined): ChangedKey[] {
    const touched = new Set<string>();
    if (before) {
      for (const key of containersOf(before).keys()) {
        this.claims.release(key, pgKey);
        touched.add(key);
      }
    }
    if (after) {
      for (const [key, info] of containersOf(after)) {
        this.claims.claim(key, pgKey, info);
        touched.add(key);
      }
    }
    const changed: ChangedKey[] = [];
    for (const key of touched) {
      // When two pod groups list the same container key, the one last in key order is served.
      const info = this.claims.last(key);
      const current = this.entries.get(key);
      if (info === undefined) {
        if (current) {
          this.entries.delete(key);
          changed.push({ key, deleted: true });
        }
      } else if (!current || !sameInfo(current.info, info)) {
        this.entries.set(key, { key, info });
        changed.push({ key, deleted: false });
      }
    }
    return changed;
  }
}
