// /v2/webrouter/webprocs?appname=<app> — what webrouter routes to (API.md §4). Only web procs
// (a name of 3+ dot-separated parts whose second-to-last is "web"). Refuses with 500 when no pod,
// or fewer than half of the pods, have an IP: webrouter must keep its old routes rather than
// drop a whole cluster's.
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, flatten, joinFragments, lostTooManyIps, memoize, ok, type EndpointContext } from './common.js';
import { objectByName } from './pod-group-maps.js';

export function isWebProc(name: string): boolean {
  const parts = name.split('.');
  return parts.length >= 3 && parts[parts.length - 2] === 'web';
}

interface WebProc {
  /** `"name":{...}`, or undefined for a proc that is not a web proc. */
  member: string | undefined;
  pods: number;
  /** Pods whose first container has an IP. */
  alive: number;
}

const webProcOf = memoize(({ pg }: PodGroupEntry): WebProc => {
  if (!isWebProc(pg.name)) return { member: undefined, pods: 0, alive: 0 };
  const annotation = encodeString(pg.annotation);
  let alive = 0;
  const podInfos = pg.pods.map((pod) => {
    if ((pod.containers[0]?.containerIp ?? '') !== '') alive++;
    const containers = pod.containers.map((c, j) => `{"ContainerIp":${encodeString(c.containerIp)},"Expose":${pg.containerSpecs[j]?.expose ?? 0}}`);
    return `{"Annotation":${annotation},"ContainerInfos":${joinFragments('[', containers)}}`;
  });
  return { member: flatten(`${encodeString(pg.name)}:{"PodInfos":${joinFragments('[', podInfos)}}`), pods: pg.pods.length, alive };
});

export function webProcs({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/webrouter/webprocs',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render(scope) {
      const entries = indexes.podGroups.byName(scope);
      let pods = 0;
      let alive = 0;
      for (const entry of entries) {
        const proc = webProcOf(entry);
        pods += proc.pods;
        alive += proc.alive;
      }
      const refused = lostTooManyIps(pods, alive);
      if (refused) return refused;
      return ok(objectByName(entries, (entry) => webProcOf(entry).member));
    },
  });
}
