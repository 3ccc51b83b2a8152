// /v2/rebellion/localprocs?appname=<app> — the pods with a container on this node (by hostname),
// for the log collector (API.md §4). Procs without a local pod are left out.
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, flatten, joinFragments, memoize, ok, type EndpointContext } from './common.js';
import { objectByName } from './pod-group-maps.js';

export function localProcs({ indexes, auth, hostname }: EndpointContext): Endpoint {
  const memberOf = memoize(({ pg }: PodGroupEntry): { member: string | undefined } => {
    const annotation = encodeString(pg.annotation);
    const appVersion = encodeString(pg.appVersion);
    const podInfos = pg.pods
      .filter((pod) => pod.containers.some((c) => c.nodeName === hostname))
      .map((pod) => `{"Annotation":${annotation},"AppVersion":${appVersion},"InstanceNo":${pod.instanceNo}}`);
    if (podInfos.length === 0) return { member: undefined };
    return { member: flatten(`${encodeString(pg.name)}:{"PodInfos":${joinFragments('[', podInfos)}}`) };
  });
  return defineEndpoint({
    path: '/v2/rebellion/localprocs',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render: (scope) => ok(objectByName(indexes.podGroups.byName(scope), (entry) => memberOf(entry).member)),
  });
}
