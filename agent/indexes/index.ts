// The agent's typed views of the cache (DESIGN.md "Indexes"): config, pod groups, containers,
// depends, nodes, plus the authorization tables, all updated incrementally. A change re-decodes
// only the values it carries, and only when they differ from what is already held.
//
// Bad values (API.md §11 item 2): a value that does not decode is logged once, listed in
// stats(), and changes nothing — the key's previous good value, if any, stays served.
import type { ChangeSet } from '../cache.js';
import { decodeDepends, serviceNameOfPortal, type DependsValue } from '../model/depends.js';
import { decodeNodeValue } from '../model/node.js';
import { decodePodGroup, podGroupFromRecord, podGroupRecord, type PodGroup } from '../model/podgroup.js';
import { AuthTableStore, type AuthTables } from './auth-tables.js';
import { ContainerIndex } from './container-index.js';
import type { ChangedKey, IndexChanges, IndexName } from './changes.js';
import type { ConfigEntry, ContainerEntry, DependsEntry, NodeEntry } from './entries.js';
import { KeyedIndex, type ReadonlyKeyedIndex } from './keyed-index.js';
import { PodGroupIndex, type ReadonlyPodGroupIndex } from './podgroup-index.js';

export type { ChangedKey, IndexChanges, IndexName } from './changes.js';
export type { ConfigEntry, ContainerEntry, ContainerInfo, DependsEntry, NodeEntry, PodGroupEntry } from './entries.js';
export type { ReadonlyKeyedIndex } from './keyed-index.js';
export type { ReadonlyPodGroupIndex } from './podgroup-index.js';
export type { AuthTables } from './auth-tables.js';

export interface IndexLogger {
  warn(obj: object, msg: string): void;
}

/** The value decoders; replaceable so tests can count calls. */
export interface ValueDecoders {
  podGroup(raw: string): PodGroup;
  depends(raw: string): DependsValue;
  /** The node value re-encoded as Go would. */
  node(raw: string): string;
}

export interface IndexesOptions {
  /** The etcd prefix everything lives under; default "/lain/". */
  prefix?: string;
  logger?: IndexLogger;
  decoders?: Partial<ValueDecoders>;
}

export interface BadValue {
  /** Full etcd key. */
  key: string;
  error: string;
  /** Whether an older good value is still served for the key. */
  servingPrevious: boolean;
}

export interface IndexStats {
  /** Entries per index. */
  keys: Record<IndexName, number>;
  generations: Record<IndexName, number>;
  superApps: number;
  containerIps: number;
  portalIps: number;
  /** Values that failed to decode, by etcd key. */
  badValues: BadValue[];
}

const SUPER_APPS_DIR = 'super_apps/';

/**
 * A pod group decoded before, saved beside its raw value (the state file): the etcd key, the
 * raw value's length (String.length: a cheap check that the record goes with the value it is
 * offered for), and the record (podGroupRecord).
 */
export type DecodedRecord = readonly [etcdKey: string, rawLength: number, record: string];

/** One etcd prefix whose values become entries of one index. */
interface ValueSlot {
  /** Etcd prefix including the trailing "/", e.g. "/lain/config/". */
  readonly root: string;
  readonly index: { get(key: string): { raw: string } | undefined };
  /** Decodes and stores a value (throws on a bad value, leaving everything as it was). */
  put(key: string, raw: string): void;
  remove(key: string): void;
}

export class Indexes implements AuthTables {
  private readonly configIndex = new KeyedIndex<ConfigEntry>();
  private readonly podGroupIndex = new PodGroupIndex();
  private readonly containerIndex = new ContainerIndex();
  private readonly dependsIndex = new KeyedIndex<DependsEntry>();
  private readonly nodeIndex = new KeyedIndex<NodeEntry>();
  private readonly auth = new AuthTableStore();

  private readonly decoders: ValueDecoders;
  private readonly logger: IndexLogger | undefined;
  private readonly slots: readonly ValueSlot[];
  /** Etcd prefix of the pod-group values, e.g. "/lain/deployd/pod_groups/". */
  private readonly podGroupRoot: string;
  private readonly generations: Record<IndexName, number> = { config: 0, podgroups: 0, containers: 0, depends: 0, nodes: 0 };
  /** Etcd key → the undecodable value last received for it. */
  private readonly badValues = new Map<string, { raw: string; error: string }>();
  /** Changes recorded during the current apply(), per index: key → deleted. */
  private pending = new Map<IndexName, Map<string, boolean>>();
  /** Records offered for the next apply() (offerDecoded), by etcd key. */
  private offered?: Map<string, DecodedRecord>;
  /** Of the records last offered: how many were taken, and how many could not be (wrong length, unreadable). */
  private offerTaken = 0;
  private offerRefused = 0;

  readonly config: ReadonlyKeyedIndex<ConfigEntry> = this.configIndex;
  readonly podGroups: ReadonlyPodGroupIndex = this.podGroupIndex;
  readonly containers: ReadonlyKeyedIndex<ContainerEntry> = this.containerIndex.entries;
  readonly depends: ReadonlyKeyedIndex<DependsEntry> = this.dependsIndex;
  readonly nodes: ReadonlyKeyedIndex<NodeEntry> = this.nodeIndex;

  constructor(options: IndexesOptions = {}) {
    const prefix = (options.prefix ?? '/lain/').replace(/\/*$/, '/');
    this.logger = options.logger;
    this.decoders = {
      podGroup: options.decoders?.podGroup ?? decodePodGroup,
      depends: options.decoders?.depends ?? decodeDepends,
      node: options.decoders?.node ?? decodeNodeValue,
    };
    this.podGroupRoot = prefix + 'deployd/pod_groups/';
    this.slots = [
      this.configSlot(prefix + 'config/'),
      this.podGroupSlot(this.podGroupRoot),
      this.dependsSlot(prefix + 'deployd/depends/pods/'),
      this.nodeSlot(prefix + 'nodes/nodes/'),
    ];
  }

  /** Applies one change: deletes first, then puts (the order a cache applying the same change uses). */
  apply(changes: ChangeSet): IndexChanges {
    for (const key of changes.dels) this.deleteKey(key);
    for (const [key, raw] of changes.puts) this.putKey(key, raw);
    this.offered = undefined;
    return this.finish();
  }

  /**
   * Pod groups decoded before (the state file's records): the next apply() takes the record of
   * a value it puts instead of decoding the value, when the record is for this key and a value of
   * this length; a record it cannot read is refused and the value decoded. Records the apply
   * does not use are dropped after it. Returns nothing; offerResult() says what was taken.
   */
  offerDecoded(records: Iterable<DecodedRecord>): void {
    this.offered = new Map();
    for (const r of records) this.offered.set(r[0], r);
    this.offerTaken = 0;
    this.offerRefused = 0;
  }

  /** Of the records last offered: taken (not decoded again) and refused (decoded after all). */
  offerResult(): { taken: number; refused: number } {
    return { taken: this.offerTaken, refused: this.offerRefused };
  }

  /**
   * The record to save beside the value `raw` of `etcdKey`: the pod group decoded from exactly
   * this value, as text; undefined when the key is not a pod group's or holds another value
   * (or none: a bad one).
   */
  recordOf(etcdKey: string, raw: string): DecodedRecord | undefined {
    const root = this.podGroupRoot;
    if (etcdKey.length <= root.length || !etcdKey.startsWith(root)) return undefined;
    const entry = this.podGroupIndex.get(etcdKey.slice(root.length));
    return entry && entry.raw === raw ? [etcdKey, raw.length, podGroupRecord(entry.pg)] : undefined;
  }

  /** Bumped whenever `index` changes; an answer rendered at one generation is valid until the next. */
  generation(index: IndexName): number {
    return this.generations[index];
  }

  stats(): IndexStats {
    const badValues: BadValue[] = [];
    for (const [key, bad] of this.badValues) {
      const slot = this.slotOf(key);
      badValues.push({ key, error: bad.error, servingPrevious: !!slot && !!slot.index.get(key.slice(slot.root.length)) });
    }
    return {
      keys: {
        config: this.configIndex.size,
        podgroups: this.podGroupIndex.size,
        containers: this.containerIndex.entries.size,
        depends: this.dependsIndex.size,
        nodes: this.nodeIndex.size,
      },
      generations: { ...this.generations },
      superApps: this.auth.superAppCount,
      containerIps: this.auth.containerIpCount,
      portalIps: this.auth.portalIpCount,
      badValues,
    };
  }

  appOfContainerIp(ip: string): string | undefined {
    return this.auth.appOfContainerIp(ip);
  }

  servicesOfPortalIp(ip: string): string[] {
    return this.auth.servicesOfPortalIp(ip);
  }

  firstServiceOfPortalIp(ip: string): string | undefined {
    return this.auth.firstServiceOfPortalIp(ip);
  }

  portalFronts(ip: string, service: string): boolean {
    return this.auth.portalFronts(ip, service);
  }

  isSuperApp(app: string): boolean {
    return this.auth.isSuperApp(app);
  }

  private slotOf(etcdKey: string): ValueSlot | undefined {
    for (const slot of this.slots) {
      if (etcdKey.length > slot.root.length && etcdKey.startsWith(slot.root)) return slot;
    }
    return undefined;
  }

  private putKey(etcdKey: string, raw: string): void {
    const slot = this.slotOf(etcdKey);
    if (!slot) return;
    const key = etcdKey.slice(slot.root.length);
    const bad = this.badValues.get(etcdKey);
    if (slot.index.get(key)?.raw === raw) {
      // The value already served (e.g. deployd rewrote it unchanged, or a bad value was replaced by the last good one).
      this.badValues.delete(etcdKey);
      return;
    }
    if (bad?.raw === raw) return; // already reported
    try {
      slot.put(key, raw);
    } catch (err) {
      const error = (err as Error).message;
      this.badValues.set(etcdKey, { raw, error });
      this.logger?.warn({ key: etcdKey, error, servingPrevious: !!slot.index.get(key) }, 'undecodable value ignored');
      return;
    }
    this.badValues.delete(etcdKey);
  }

  /**
   * Deletes exactly `etcdKey`. Directory deletes (etcd v2) reach the agent already expanded
   * into the keys under the directory — the hub does that against its own state — so the
   * agent's state stays identical to the hub's (API.md §11 item 1: never a string-prefix delete).
   */
  private deleteKey(etcdKey: string): void {
    const slot = this.slotOf(etcdKey);
    if (slot) slot.remove(etcdKey.slice(slot.root.length));
    this.badValues.delete(etcdKey);
  }

  private record(index: IndexName, key: string, deleted: boolean): void {
    let keys = this.pending.get(index);
    if (!keys) {
      keys = new Map();
      this.pending.set(index, keys);
    }
    keys.set(key, deleted);
  }

  private recordAll(index: IndexName, changed: ChangedKey[]): void {
    for (const c of changed) this.record(index, c.key, c.deleted);
  }

  private finish(): IndexChanges {
    const out: IndexChanges = {};
    for (const [index, keys] of this.pending) {
      this.generations[index]++;
      out[index] = [...keys].map(([key, deleted]) => ({ key, deleted }));
    }
    this.pending = new Map();
    return out;
  }

  private configSlot(root: string): ValueSlot {
    const index = this.configIndex;
    return {
      root, index,
      put: (key, raw) => {
        index.set(key, { key, raw });
        if (key.startsWith(SUPER_APPS_DIR)) this.auth.addSuperApp(key.slice(SUPER_APPS_DIR.length));
        this.record('config', key, false);
      },
      remove: (key) => {
        if (!index.delete(key)) return;
        if (key.startsWith(SUPER_APPS_DIR)) this.auth.removeSuperApp(key.slice(SUPER_APPS_DIR.length));
        this.record('config', key, true);
      },
    };
  }

  private podGroupSlot(root: string): ValueSlot {
    const index = this.podGroupIndex;
    const changed = (key: string, before: PodGroup | undefined, after: PodGroup | undefined) => {
      this.record('podgroups', key, after === undefined);
      this.recordAll('containers', this.containerIndex.update(key, before, after));
      this.auth.updatePodGroup(key, before, after);
    };
    return {
      root, index,
      put: (key, raw) => {
        const pg = (this.offered && this.offeredPodGroup(root + key, raw)) ?? this.decoders.podGroup(raw);
        const old = index.set({ key, raw, pg });
        changed(key, old?.pg, pg);
      },
      remove: (key) => {
        const old = index.delete(key);
        if (old) changed(key, old.pg, undefined);
      },
    };
  }

  /** The pod group offered (offerDecoded) for this value, if one was and it can be read. */
  private offeredPodGroup(etcdKey: string, raw: string): PodGroup | undefined {
    const r = this.offered!.get(etcdKey);
    if (!r) return undefined;
    if (r[1] === raw.length) {
      try {
        const pg = podGroupFromRecord(r[2]);
        this.offerTaken++;
        return pg;
      } catch { /* refused below: the value is decoded instead */ }
    }
    this.offerRefused++;
    return undefined;
  }

  private dependsSlot(root: string): ValueSlot {
    const index = this.dependsIndex;
    return {
      root, index,
      put: (key, raw) => {
        const value = this.decoders.depends(raw);
        const service = serviceNameOfPortal(key);
        const old = index.get(key);
        index.set(key, { key, raw, value, service });
        this.auth.updatePortal(key, service, old?.value, value);
        this.record('depends', key, false);
      },
      remove: (key) => {
        const old = index.get(key);
        if (!old) return;
        index.delete(key);
        this.auth.updatePortal(key, old.service, old.value, undefined);
        this.record('depends', key, true);
      },
    };
  }

  private nodeSlot(root: string): ValueSlot {
    const index = this.nodeIndex;
    return {
      root, index,
      put: (key, raw) => {
        index.set(key, { key, raw, json: this.decoders.node(raw) });
        this.record('nodes', key, false);
      },
      remove: (key) => {
        if (index.delete(key)) this.record('nodes', key, true);
      },
    };
  }
}
