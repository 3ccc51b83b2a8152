// Keeps one of Node's own process.nextTick records (a TickObject) alive for the life of the
// process, so that V8 never loses the map (hidden class) its object literal builds. Imported
// for this side effect first thing by each entry point (agent/main.ts, hub/main.ts, hub/worker.ts).
//
// Why: nextTick builds each record with an object literal with computed keys,
// `{ [async_id_symbol]: …, [trigger_async_id_symbol]: …, callback, args }`. A full garbage
// collection that finds no record alive at that moment collects that map chain too; the
// literal's site then keeps going to V8's runtime (Runtime_DefineKeyedOwnPropertyInLiteral)
// instead of its inline fast path, on every nextTick, for the rest of the process. node:http
// calls nextTick several times per request (endReadable, onwrite, resume, resOnFinish, destroy).
// Measured here (perf record, wrk -c16 on a small answer): after an agent's initial sync, or
// after a single idle full GC in a bare node:http server, 12–14 % of the process's CPU was in
// that runtime function, and the bare server's req/s fell from ~50k to ~39k; with one record
// held, none of it. An idle agent runs full GCs (collectGarbage after the sync, V8's own), so
// without this every agent would serve every request on the slow path.
//
// The record is Node's own (executionAsyncResource() inside a nextTick callback is that tick's
// record), so it has the records' map whatever their shape is in this Node version; Node's
// symbols for its keys are not exported, and other objects' look-alike symbols (a Timeout's
// asyncId) build another map.
import { executionAsyncResource } from 'node:async_hooks';

let pinned: object | undefined;

process.nextTick(() => { pinned = executionAsyncResource(); });

/** The record held (test/tick-map.test.ts checks it is a real nextTick record); undefined until the first tick. */
export function pinnedTickObject(): object | undefined {
  return pinned;
}
