// /v2/backupspec?appname=<app> — every pod's containers and annotation, for backupd (API.md §4). Super only.
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, fixPrefix, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';
import { objectByName } from './pod-group-maps.js';

const memberOf = memoize(({ pg }: PodGroupEntry): string => {
  const annotation = encodeString(pg.annotation);
  const pods = pg.pods.map((pod) => {
    const containers = pod.containers.map((c) =>
      `{"Id":${encodeString(c.id)},"Ip":${encodeString(c.containerIp)},"NodeIp":${encodeString(c.nodeIp)},"NodeName":${encodeString(c.nodeName)}}`);
    return `{"Annotation":${annotation},"Containers":${joinFragments('[', containers)},"InstanceNo":${pod.instanceNo}}`;
  });
  return `${encodeString(pg.name)}:${joinFragments('[', pods)}`;
});

export function backupSpec({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/backupspec',
    index: 'podgroups',
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      const app = req.query('appname') || '*';
      return keyScope(app === '*' ? app : fixPrefix(app));
    },
    render: (scope) => ok(objectByName(indexes.podGroups.byName(scope), memberOf)),
  });
}
