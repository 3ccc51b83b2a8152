// What each index holds per key. An entry is immutable: a new value for a key makes a new
// entry, so anything derived from an entry (an encoded fragment) can be cached against it.
import type { DependsValue } from '../model/depends.js';
import type { PodGroup } from '../model/podgroup.js';

/** /lain/config/<key>: the raw value, never parsed. */
export interface ConfigEntry {
  readonly key: string;
  readonly raw: string;
}

/** /lain/deployd/pod_groups/<app>/<proc>. */
export interface PodGroupEntry {
  readonly key: string;
  readonly raw: string;
  readonly pg: PodGroup;
}

/** /lain/deployd/depends/pods/<portal>. */
export interface DependsEntry {
  readonly key: string;
  readonly raw: string;
  readonly value: DependsValue;
  /** The service this portal serves (from the key), for the portal-IP auth table. */
  readonly service: string;
}

/** /lain/nodes/nodes/<name>:<ip>:<port>. */
export interface NodeEntry {
  readonly key: string;
  readonly raw: string;
  /** The value re-encoded as Go does ("null" for a null value). */
  readonly json: string;
}

/** One container as /v2/containers and /v2/localspecquery see it. */
export interface ContainerInfo {
  readonly app: string;
  readonly appVersion: string;
  readonly proc: string;
  readonly nodeName: string;
  readonly nodeIp: string;
  readonly ip: string;
  readonly port: number;
  readonly instanceNo: number;
}

/** A container under one of its two keys: `<NodeName>/<Id>` or `<NodeIp>/<Id>`. */
export interface ContainerEntry {
  readonly key: string;
  readonly info: ContainerInfo;
}

/** Who a container IP belongs to, for authorization. */
export interface ContainerOwner {
  readonly app: string;
  readonly proc: string;
  readonly containerId: string;
}
