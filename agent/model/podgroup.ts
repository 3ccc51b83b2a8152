// A pod-group value (deployd's PodGroupWithSpec, API.md §1.2), decoded into only the fields
// lainlet's endpoints use. The full value carries a docker-inspect `Runtime` per container;
// of that we keep only the ProcName its `Config.Env` gives.
import { parseStreamPorts, type StreamPort } from './annotation.js';
import {
  DecodeError, isObject, parseJson, readArray, readInt, readObject, readString, readStrings, structElements,
  type JsonObject,
} from './gofields.js';

/** One entry of Spec.Pod.Containers: what the proc asked for. */
export interface ContainerSpec {
  readonly command: readonly string[] | null;
  readonly cpuLimit: number;
  readonly env: readonly string[] | null;
  readonly expose: number;
  readonly image: string;
  readonly memoryLimit: number;
  readonly volumes: readonly string[] | null;
}

/** One running container of a pod. */
export interface PodContainer {
  readonly id: string;
  readonly nodeName: string;
  readonly nodeIp: string;
  /** "" when the container lost its IP. */
  readonly containerIp: string;
  readonly containerPort: number;
  /**
   * The value of the last LAIN_PROCNAME= entry of Runtime.Config.Env (image env, then spec env,
   * then deployd's), "" when none: procwatcher's ProcName. Only this is kept of the runtime env
   * (hundreds of entries per container would otherwise stay in memory for one field).
   */
  readonly procName: string;
}

export interface Pod {
  readonly instanceNo: number;
  /** Empty for a pending pod (and for a null Containers). */
  readonly containers: readonly PodContainer[];
}

export interface Dependency {
  readonly podName: string;
  readonly policy: number;
}

export interface PodGroup {
  /** Spec.Name, the full proc name, e.g. "hello.web.web". */
  readonly name: string;
  /** Spec.Namespace, the app name. */
  readonly namespace: string;
  /** Spec.Pod.Annotation: a JSON text written by lain-sdk, passed through as a string. */
  readonly annotation: string;
  readonly dependencies: readonly Dependency[];
  readonly containerSpecs: readonly ContainerSpec[];
  /** Empty for both `[]` and `null` (every endpoint treats them alike). */
  readonly pods: readonly Pod[];
  /** The ports the annotation declares; empty unless this is a stream proc. */
  readonly streamPorts: readonly StreamPort[];
  /** LAIN_APP_RELEASE_VERSION from the first spec container's env ("" if none usable). */
  readonly appVersion: string;
}

/** Decodes a pod-group value; throws DecodeError naming the offending field. */
export function decodePodGroup(raw: string): PodGroup {
  const root = parseJson(raw);
  if (root !== null && !isObject(root)) throw new DecodeError(`pod group: cannot decode ${Array.isArray(root) ? 'array' : typeof root} into object`);
  const value = root ?? {};
  const spec = readObject(value, 'Spec', 'PodGroup') ?? {};
  const podSpec = readObject(spec, 'Pod', 'Spec') ?? {};
  const containerSpecs = structElements(readArray(podSpec, 'Containers', 'Spec.Pod'), 'Spec.Pod.Containers')
    .map((c, j) => decodeContainerSpec(c ?? {}, `Spec.Pod.Containers[${j}]`));
  const dependencies = structElements(readArray(podSpec, 'Dependencies', 'Spec.Pod'), 'Spec.Pod.Dependencies')
    .map((d, k) => {
      const path = `Spec.Pod.Dependencies[${k}]`;
      return { podName: readString(d ?? {}, 'PodName', path), policy: readInt(d ?? {}, 'Policy', path) };
    });
  const pods = structElements(readArray(value, 'Pods', 'PodGroup'), 'Pods')
    .map((p, i) => decodePod(p ?? {}, `Pods[${i}]`));
  const annotation = readString(podSpec, 'Annotation', 'Spec.Pod');
  return {
    name: readString(spec, 'Name', 'Spec'),
    namespace: readString(spec, 'Namespace', 'Spec'),
    annotation,
    dependencies,
    containerSpecs,
    pods,
    streamPorts: parseStreamPorts(annotation),
    appVersion: releaseVersion(containerSpecs[0]?.env ?? null),
  };
}

function decodeContainerSpec(c: JsonObject, path: string): ContainerSpec {
  return {
    command: readStrings(c, 'Command', path),
    cpuLimit: readInt(c, 'CpuLimit', path),
    env: readStrings(c, 'Env', path),
    expose: readInt(c, 'Expose', path),
    image: readString(c, 'Image', path),
    memoryLimit: readInt(c, 'MemoryLimit', path),
    volumes: readStrings(c, 'Volumes', path),
  };
}

function decodePod(p: JsonObject, path: string): Pod {
  const containers = structElements(readArray(p, 'Containers', path), `${path}.Containers`)
    .map((c, j) => decodeContainer(c ?? {}, `${path}.Containers[${j}]`));
  return { instanceNo: readInt(p, 'InstanceNo', path), containers };
}

function decodeContainer(c: JsonObject, path: string): PodContainer {
  const runtime = readObject(c, 'Runtime', path);
  const config = runtime && readObject(runtime, 'Config', `${path}.Runtime`);
  return {
    id: readString(c, 'Id', path),
    nodeName: readString(c, 'NodeName', path),
    nodeIp: readString(c, 'NodeIp', path),
    containerIp: readString(c, 'ContainerIp', path),
    containerPort: readInt(c, 'ContainerPort', path),
    procName: procNameOf(config ? readStrings(config, 'Env', `${path}.Runtime.Config`) : null),
  };
}

const RELEASE_VERSION = 'LAIN_APP_RELEASE_VERSION';

/**
 * lainlet splits each env entry on "=" and takes the first LAIN_APP_RELEASE_VERSION entry that
 * has exactly two parts, so a version containing "=" is skipped.
 */
function releaseVersion(env: readonly string[] | null): string {
  if (env === null) return '';
  for (const entry of env) {
    const parts = entry.split('=');
    if (parts.length === 2 && parts[0] === RELEASE_VERSION) return parts[1];
  }
  return '';
}

/** The value of the last LAIN_PROCNAME= entry (the runtime env may list it several times). */
export function procNameOf(runtimeEnv: readonly string[] | null): string {
  if (runtimeEnv === null) return '';
  let name = '';
  for (const entry of runtimeEnv) {
    if (entry.startsWith('LAIN_PROCNAME=')) name = entry.slice('LAIN_PROCNAME='.length);
  }
  return name;
}

/**
 * The version of the PodGroup record decodePodGroup makes, as saved in the state file beside
 * the raw value (podGroupRecord). Bump it with any change to what decodePodGroup returns for a
 * value — a field added, renamed, or read differently (here, in annotation.ts or gofields.ts):
 * an agent then decodes the raw values of a file saved by an older one instead of taking its
 * records. test/podgroup-record.test.ts fails when those sources change and this stays put.
 */
export const POD_GROUP_RECORD_VERSION = 1;

/** A decoded pod group as text, to be read back by podGroupFromRecord (the state file). */
export function podGroupRecord(pg: PodGroup): string {
  return JSON.stringify(pg);
}

/**
 * A pod group from its record (podGroupRecord); throws DecodeError unless it has the fields
 * every endpoint reads (a record is only as good as the file it came from, which a CRC guards).
 */
export function podGroupFromRecord(record: string): PodGroup {
  const pg = parseJson(record) as PodGroup | null;
  if (!isObject(pg) || typeof pg.name !== 'string' || typeof pg.namespace !== 'string' || typeof pg.annotation !== 'string'
    || typeof pg.appVersion !== 'string' || !Array.isArray(pg.dependencies) || !Array.isArray(pg.containerSpecs)
    || !Array.isArray(pg.pods) || !Array.isArray(pg.streamPorts)) {
    throw new DecodeError('pod group record: not a decoded pod group');
  }
  return pg;
}
