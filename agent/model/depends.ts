// A depends value (API.md §1.3): map[nodeName]map[clientApp]SharedPodWithSpec, decoded into the
// fields /v2/depends and the portal-IP auth table use. Maps are kept as arrays sorted the way Go
// writes map keys, so encoding needs no further sorting.
import { compareUtf8 } from '../../shared/gojson.js';
import {
  DecodeError, isObject, parseJson, readArray, readInt, readObject, readString, structElements,
} from './gofields.js';

export interface PortalContainer {
  readonly id: string;
  readonly nodeIp: string;
  readonly containerIp: string;
  readonly containerPort: number;
}

/** The shared portal pod serving one client app on one node. */
export interface PortalPod {
  /** Spec.Annotation of the portal (contains "service_name"). */
  readonly annotation: string;
  readonly containers: readonly PortalContainer[];
}

export interface DependsNode {
  readonly node: string;
  /** Sorted by client app name (byte-wise). */
  readonly clients: ReadonlyArray<readonly [clientApp: string, pod: PortalPod]>;
}

/** Sorted by node name (byte-wise). */
export type DependsValue = readonly DependsNode[];

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

export function decodeDepends(raw: string): DependsValue {
  const root = parseJson(raw);
  if (root === null) return [];
  if (!isObject(root)) throw new DecodeError(`depends: cannot decode ${describe(root)} into map`);
  return Object.keys(root).sort(compareUtf8).map((node): DependsNode => {
    const apps = root[node];
    if (apps === null) return { node, clients: [] };
    if (!isObject(apps)) throw new DecodeError(`depends[${node}]: cannot decode ${describe(apps)} into map`);
    const clients = Object.keys(apps).sort(compareUtf8).map((app): readonly [string, PortalPod] => {
      const path = `depends[${node}][${app}]`;
      const shared = apps[app];
      if (shared !== null && !isObject(shared)) throw new DecodeError(`${path}: cannot decode ${describe(shared)} into object`);
      const spec = shared ? readObject(shared, 'Spec', path) : undefined;
      const pod = shared ? readObject(shared, 'Pod', path) : undefined;
      const containers = pod
        ? structElements(readArray(pod, 'Containers', `${path}.Pod`), `${path}.Pod.Containers`).map((c, j) => {
          const cpath = `${path}.Pod.Containers[${j}]`;
          const obj = c ?? {};
          return {
            id: readString(obj, 'Id', cpath),
            nodeIp: readString(obj, 'NodeIp', cpath),
            containerIp: readString(obj, 'ContainerIp', cpath),
            containerPort: readInt(obj, 'ContainerPort', cpath),
          };
        })
        : [];
      return [app, { annotation: spec ? readString(spec, 'Annotation', `${path}.Spec`) : '', containers }];
    });
    return { node, clients };
  });
}

/**
 * The service a portal serves, from its depends key: split on "."; with at most three parts the
 * first one, else all but the last two ("resource.mysql.hello.portal.portal-mysql" → "resource.mysql.hello").
 */
export function serviceNameOfPortal(portalKey: string): string {
  const parts = portalKey.split('.');
  return parts.length > 3 ? parts.slice(0, -2).join('.') : parts[0];
}
