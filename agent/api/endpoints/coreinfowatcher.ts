// /v2/coreinfowatcher?appname=<app> — every pod's containers with their spec (API.md §4).
// The j-th container of a pod is described by the j-th spec container; a pod with more containers
// than the spec (lainlet panicked) gets zero values for the missing spec fields.
import { encodeString, encodeStringsOrNull } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, joinFragments, memoize, ok, type EndpointContext } from './common.js';
import { objectByName } from './pod-group-maps.js';

const memberOf = memoize(({ pg }: PodGroupEntry): string => {
  const annotation = encodeString(pg.annotation);
  const dependencies = joinFragments('[', pg.dependencies.map((d) => `{"PodName":${encodeString(d.podName)},"Policy":${d.policy}}`));
  const podInfos = pg.pods.map((pod) => {
    const containers = pod.containers.map((c, j) => {
      const spec = pg.containerSpecs[j];
      return `{"Command":${encodeStringsOrNull(spec?.command ?? null)},"ContainerId":${encodeString(c.id)},`
        + `"ContainerIp":${encodeString(c.containerIp)},"Cpu":${spec?.cpuLimit ?? 0},"Env":${encodeStringsOrNull(spec?.env ?? null)},`
        + `"Expose":${spec?.expose ?? 0},"Image":${encodeString(spec?.image ?? '')},"Memory":${spec?.memoryLimit ?? 0},`
        + `"NodeIp":${encodeString(c.nodeIp)},"NodeName":${encodeString(c.nodeName)},"Volumes":${encodeStringsOrNull(spec?.volumes ?? null)}}`;
    });
    return `{"Annotation":${annotation},"ContainerInfos":${joinFragments('[', containers)},`
      + `"Dependencies":${dependencies},"InstanceNo":${pod.instanceNo}}`;
  });
  return `${encodeString(pg.name)}:{"PodInfos":${joinFragments('[', podInfos)}}`;
});

export function coreInfoWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/coreinfowatcher',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render: (scope) => ok(objectByName(indexes.podGroups.byName(scope), memberOf)),
  });
}
