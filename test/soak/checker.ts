// The soak's checker: every observation of an agent (a /debug revision, a GET answer between
// two /debug answers, a stream event) is held against the writer's history.
//
//  - an agent's revision never goes backwards within a process; a restarted agent starts at
//    or above what it had (SIGTERM) or above the last state file it was seen to write (SIGKILL);
//  - a GET answered between two /debug answers with the same revision R equals the view of
//    etcd's state at R;
//  - a stream's data is a subsequence of the view's successive values: no event shows a state
//    older than the one before it, or one etcd never had; no event repeats the previous data;
//    the first is `init` (id 1), ids increase; after a restart the new connection continues
//    from the floor above;
//  - no 503 once an agent had state (from a hub, or a state file it wrote before a restart).
import type { History } from './history.js';
import { VIEWS } from './model.js';
import type { ManagedProc } from './procs.js';

export class Findings {
  private readonly byKey = new Map<string, { detail: string; count: number }>();
  /** Findings say when they were seen, relative to this (the start of the fault plan). */
  startedAt = Date.now();

  add(category: string, subject: string, detail: string): void {
    const key = `${category}|${subject}`;
    const f = this.byKey.get(key);
    if (f) f.count++;
    else this.byKey.set(key, { detail: `[+${((Date.now() - this.startedAt) / 1000).toFixed(1)}s] ${detail}`, count: 1 });
  }

  get size(): number { return this.byKey.size; }

  lines(): string[] {
    return [...this.byKey].map(([key, { detail, count }]) => {
      const [category, subject] = key.split('|');
      return `FINDING [${category}] ${subject}: ${detail}${count > 1 ? ` (and ${count - 1} more like it)` : ''}`;
    });
  }
}

interface DebugAnswer { revision: number; hasState: boolean; stateFile: { lastSavedAt: number | null } | null; hub?: { address?: string | null; live?: boolean } }

/** What the checker knows about one agent across its incarnations. */
export class AgentRecord {
  /** Incarnation the fields below describe. */
  incarnation = 0;
  /** Highest revision seen in this incarnation (-1: none yet). */
  lastRevision = -1;
  /** This incarnation reported hasState. */
  hadState = false;
  /** The revision this incarnation must start at or above. */
  floorRevision = -1;
  /** A state file was written (a lastSavedAt was seen) at some point. */
  savedKnown = false;
  /** A lower bound of the revision in the newest state file. */
  savedFloorRevision = -1;
  private lastSavedAt: number | null = null;
  private revisionBeforeSave = -1;
  /** Restarts after SIGKILL whose state file was older than what had been served (by design: the file is debounced). */
  killRollbacks = 0;
  /** Highest revision seen in any incarnation. */
  everRevision = -1;
  /** The hub the agent last said it was on (a name, from /debug). */
  hub = '?';
  /** Maps a /debug hub address to a name for reports. */
  hubName: (address: string) => string = (a) => a;

  constructor(readonly name: string, readonly proc: ManagedProc) {}

  /** floors[i]: the revision incarnation i must start at or above, fixed when it is first seen. */
  private readonly floors = new Map<number, number>();

  /** Called on every observation: switches to the process's current incarnation. */
  sync(): void {
    const now = this.proc.incarnation;
    if (now === this.incarnation) return;
    // Only what earlier incarnations were seen to save counts: nothing of this one is known yet.
    const killed = this.proc.killedBetween(this.incarnation, now);
    this.floorRevision = this.incarnation === 0 ? -1 : killed ? this.savedFloorRevision : Math.max(this.lastRevision, this.savedFloorRevision);
    this.floors.set(now, this.floorRevision);
    this.incarnation = now;
    this.lastRevision = -1;
    this.hadState = false;
    this.lastSavedAt = null;
    this.revisionBeforeSave = -1;
  }

  floorOf(incarnation: number): number {
    return this.floors.get(incarnation) ?? -1;
  }

  /** True when a 503 from this incarnation would be a bug. */
  mustHaveState(): boolean {
    return this.hadState || (this.incarnation > 1 && this.savedKnown);
  }

  observeDebug(d: DebugAnswer, findings: Findings): void {
    this.sync();
    this.hub = d.hub?.address ? `${this.hubName(d.hub.address)}${d.hub.live ? '' : ' (not live)'}` : 'no hub';
    const rev = d.revision;
    if (d.hasState) this.hadState = true;
    if (!d.hasState && this.mustHaveState()) findings.add('lost-state', this.name, `/debug says hasState=false in incarnation ${this.incarnation} after it had state`);
    if (d.hasState) {
      if (rev < this.lastRevision) findings.add('revision-backwards', this.name, `/debug revision went from ${this.lastRevision} to ${rev} within incarnation ${this.incarnation}`);
      if (this.lastRevision < 0 && rev < this.floorRevision) {
        const killed = this.proc.killedBetween(this.incarnation - 1, this.incarnation);
        findings.add('restart-rollback', this.name, `incarnation ${this.incarnation} (after ${killed ? 'SIGKILL' : 'SIGTERM'}) started at revision ${rev}, below ${this.floorRevision} (${killed ? 'a state file it was seen to write' : 'the last revision the stopped process had'}); its log so far:\n${this.proc.output()}`);
      }
      if (this.lastRevision < 0 && this.incarnation > 1 && rev < this.everRevision) this.killRollbacks++;
      this.lastRevision = Math.max(this.lastRevision, rev);
      this.everRevision = Math.max(this.everRevision, rev);
    }
    const savedAt = d.stateFile?.lastSavedAt ?? null;
    if (savedAt !== null && savedAt !== this.lastSavedAt) {
      // The save happened after the previous answer, whose revision is therefore a lower bound.
      this.savedKnown = true;
      if (this.revisionBeforeSave >= 0) this.savedFloorRevision = Math.max(this.savedFloorRevision, this.revisionBeforeSave);
      this.lastSavedAt = savedAt;
    }
    if (d.hasState) this.revisionBeforeSave = rev;
  }
}

type PendingEvent = { id: number; event: string; fp: string; data: string; historyLength: number; hub: string } | { resetToRevision: number };

/** One stream (agent × view) across its connections. */
export class StreamCheck {
  /** History index of the latest state the stream's events are consistent with. */
  private cursor = 0;
  private lastFp: string | undefined;
  private lastId = 0;
  private connection = 0;
  private events = 0;
  private readonly pending: PendingEvent[] = [];
  /** Fingerprint of the latest event of the current connection. */
  latestFp: string | undefined;
  connected = false;

  constructor(
    private readonly agent: AgentRecord,
    readonly view: number,
    private readonly history: History,
    private readonly findings: Findings,
  ) {}

  private get subject(): string { return `${this.agent.name} stream ${VIEWS[this.view].name}`; }

  /** A new connection, answered by incarnation `incarnation` of the agent. */
  opened(incarnation: number): void {
    this.agent.sync();
    this.connection++;
    this.connected = true;
    this.lastId = 0;
    this.lastFp = undefined;
    this.latestFp = undefined;
    if (incarnation !== this.incarnation) {
      // A restarted agent continues where it was after SIGTERM (its state was saved); after a
      // SIGKILL, from the newest state file it was seen to write (the file is debounced).
      if (this.incarnation !== 0 && this.agent.proc.killedBetween(this.incarnation, incarnation)) this.pending.push({ resetToRevision: this.agent.floorOf(incarnation) });
      this.incarnation = incarnation;
    }
  }
  private incarnation = 0;

  closed(): void {
    this.connected = false;
  }

  event(id: number, event: string, data: string, fp: string | undefined): void {
    this.events++;
    if (event === 'heartbeat') return;
    if (event === 'error' || id === 0) {
      this.findings.add('stream-error', this.subject, `event ${event} id ${id}: ${data.slice(0, 200)}`);
      return;
    }
    if (this.lastId === 0 && (event !== 'init' || id !== 1)) this.findings.add('stream-framing', this.subject, `connection ${this.connection} began with ${event} id ${id}, not init id 1`);
    if (this.lastId > 0 && event === 'init') this.findings.add('stream-framing', this.subject, `a second init (id ${id}) on connection ${this.connection}`);
    if (this.lastId > 0 && id <= this.lastId) this.findings.add('stream-framing', this.subject, `id ${id} after id ${this.lastId}`);
    if (event !== 'init' && event !== 'update' && event !== 'delete') this.findings.add('stream-framing', this.subject, `unknown event ${JSON.stringify(event)}`);
    this.lastId = id;
    if (fp === undefined) {
      this.findings.add('stream-data', this.subject, `event id ${id} data is not JSON: ${data.slice(0, 200)}`);
      return;
    }
    if (event !== 'init' && fp === this.lastFp) this.findings.add('stream-duplicate', this.subject, `event id ${id} (${event}) repeats the previous data: an unchanged view must not produce an event (API.md §11.6)`);
    this.lastFp = fp;
    this.latestFp = fp;
    this.pending.push({ id, event, fp, data, historyLength: this.history.length, hub: this.agent.hub });
    this.drain(false);
  }

  /**
   * Matches pending events to the history, in order. An event not matched yet waits until the
   * writer has recorded two more operations (so the one in flight when it arrived is known).
   */
  drain(final: boolean): void {
    while (this.pending.length) {
      const e = this.pending[0];
      if ('resetToRevision' in e) {
        this.cursor = Math.max(0, this.history.indexAt(e.resetToRevision));
        this.pending.shift();
        continue;
      }
      const at = this.history.firstMatch(this.view, e.fp, this.cursor);
      if (at >= 0) {
        this.cursor = at;
        this.pending.shift();
        continue;
      }
      if (!final && this.history.length < e.historyLength + 2) return;
      this.pending.shift();
      const before = this.history.lastMatchBefore(this.view, e.fp, this.cursor);
      const then = e.historyLength - 1;
      if (before >= 0) {
        this.findings.add('stream-backwards', this.subject, `event id ${e.id} (${e.event}) shows the value of ${this.history.describe(before)} after the stream had shown ${this.history.describe(this.cursor)} (agent on ${e.hub})`);
      } else {
        this.findings.add('stream-phantom', this.subject, `event id ${e.id} (${e.event}) shows a value the view never had; vs etcd at ${this.history.describe(then)}: ${this.history.diffAgainst(this.view, then, e.data)}; vs the previous event's ${this.history.describe(this.cursor)}: ${this.history.diffAgainst(this.view, this.cursor, e.data)} (agent on ${e.hub})`);
      }
    }
  }

  get eventCount(): number { return this.events; }
}

interface PendingGet { agent: AgentRecord; incarnation: number; view: number; revision: number; fp: string | undefined; status: number; body: string }

/** GET answers sandwiched between two /debug answers with the same revision. */
export class ServedStateCheck {
  private readonly pending: PendingGet[] = [];
  checked = 0;

  constructor(private readonly history: History, private readonly findings: Findings) {}

  add(g: PendingGet): void {
    this.pending.push(g);
    this.drain(false);
  }

  drain(final: boolean): void {
    for (let i = 0; i < this.pending.length;) {
      const g = this.pending[i];
      if (!final && g.revision >= this.history.lastRevision) { i++; continue; }
      this.pending.splice(i, 1);
      this.checked++;
      const name = VIEWS[g.view].name;
      const subject = `${g.agent.name} GET ${name}`;
      if (g.status !== 200) { this.findings.add('get-status', subject, `answered ${g.status} at revision ${g.revision}`); continue; }
      const at = this.history.indexAt(g.revision);
      if (at < 0) { this.findings.add('served-state', subject, `revision ${g.revision} is before the seed`); continue; }
      const want = this.history.fps[g.view][at];
      if (g.fp === want) continue;
      const other = g.fp === undefined ? -1 : this.history.lastMatchBefore(g.view, g.fp, this.history.length);
      this.findings.add('served-state', subject, `at /debug revision ${g.revision} the answer is not the view of ${this.history.describe(at)} (differs in ${this.history.diffAgainst(g.view, at, g.body)}); ${other >= 0 ? `it is the view of ${this.history.describe(other)}` : 'etcd never had that value'} (incarnation ${g.incarnation}, on ${g.agent.hub})`);
    }
  }
}
