// /v2/streamrouter/streamprocs?appname=<app> — stream procs by app, with their upstreams and
// listen ports (API.md §4). Same 500 guard as webprocs, counted over stream procs only. A pod
// without containers is an upstream with no host, counted dead (lainlet panicked: §11 item 4).
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, flatten, joinFragments, lostTooManyIps, memoize, ok, type EndpointContext } from './common.js';

interface StreamProc {
  /** The encoded proc: {"Name","Upstreams","Services"}. */
  json: string;
  pods: number;
  alive: number;
}

const streamProcOf = memoize(({ pg }: PodGroupEntry): StreamProc => {
  let alive = 0;
  const upstreams = pg.pods
    .map((pod) => {
      const host = pod.containers[0]?.containerIp ?? '';
      if (host !== '') alive++;
      return { host, instanceNo: pod.instanceNo };
    })
    .sort((a, b) => a.instanceNo - b.instanceNo)
    .map((u) => `{"Host":${encodeString(u.host)},"InstanceNo":${u.instanceNo}}`);
  const services = [...pg.streamPorts]
    .sort((a, b) => a.listen - b.listen)
    .map((p) => `{"UpstreamPort":${p.upstream},"ListenPort":${p.listen},"Send":"","Expect":""}`);
  const json = `{"Name":${encodeString(pg.name)},"Upstreams":${joinFragments('[', upstreams)},"Services":${joinFragments('[', services)}}`;
  return { json: flatten(json), pods: pg.pods.length, alive };
});

export function streamProcs({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/streamrouter/streamprocs',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render(scope) {
      // Ordered by namespace, then name: each namespace's procs form one run.
      const entries = indexes.podGroups.streamProcs(scope);
      let pods = 0;
      let alive = 0;
      let out = '{';
      let namespace: string | undefined;
      for (const entry of entries) {
        const proc = streamProcOf(entry);
        pods += proc.pods;
        alive += proc.alive;
        if (entry.pg.namespace !== namespace) {
          if (namespace !== undefined) out += '],';
          namespace = entry.pg.namespace;
          out += encodeString(namespace) + ':[';
        } else {
          out += ',';
        }
        out += proc.json;
      }
      const refused = lostTooManyIps(pods, alive);
      if (refused) return refused;
      return ok(out + (namespace === undefined ? '}' : ']}'));
    },
  });
}
