/**
 * Surviving mutants that are not killed, each with why — rendered into mutation/REPORT.md next
 * to the survivor it explains (matched by file, line and mutator; a survivor without an entry
 * is shown as unexplained). Lines are those of the last run: when code moves, the report shows
 * the mismatch and this list is brought up to date.
 *
 * `equivalent`: the mutant cannot change observable behaviour. A `// Stryker disable` comment
 * would also switch off the other, killed mutants of the same mutator on that line, so these
 * stay in the score as survivors. `open`: it could be killed, and is not yet (the reason says
 * what a test would need).
 */
export interface Explanation {
  file: string;
  line: number;
  mutator: string;
  kind: 'equivalent' | 'open';
  reason: string;
}

export const EXPLAINED: Explanation[] = [
  { file: 'hub/state.ts', line: 188, mutator: 'ConditionalExpression', kind: 'equivalent', reason: '`gaps.length > 0` only skips the inGap loop over an empty list' },
  { file: 'hub/state.ts', line: 188, mutator: 'EqualityOperator', kind: 'equivalent', reason: '`gaps.length >= 0` only runs the inGap loop over an empty list' },
  { file: 'hub/state.ts', line: 190, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'the history\'s newest revision is the last change whenever the history is not empty (every commit pushes it); an empty history answers null from its own framesAfter' },
  { file: 'hub/catchup.ts', line: 43, mutator: 'ConditionalExpression', kind: 'open', reason: 're-fetching the history on every batch only makes an agent the history moved past get its snapshot sooner; both end correct, so a test would pin a choice, not the contract' },
  { file: 'hub/catchup.ts', line: 45, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'an agent at the last change gets [] from framesAfter, and line 57 returns null for it' },
  { file: 'hub/catchup.ts', line: 45, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'an agent exactly at the last change then asks framesAfter, which answers [] for it, and line 57 returns null: the same answer one step later' },
  { file: 'hub/catchup.ts', line: 57, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'framesAfter returns [] only for an agent at the last change, which line 45 already answered' },
  { file: 'shared/protocol.ts', line: 125, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'Number.isSafeInteger is false for every non-number: the typeof check is only a fast path' },
  { file: 'shared/gojson.ts', line: 43, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'always taking the escaping path gives the same bytes; the check is a fast path only' },
  { file: 'agent/indexes/podgroup-index.ts', line: 113, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'sorting items that are already sorted changes nothing (distinct entries never compare equal)' },
  { file: 'agent/indexes/podgroup-index.ts', line: 113, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'sorting items that are already sorted changes nothing (distinct entries never compare equal)' },
  { file: 'agent/indexes/sorted-set.ts', line: 49, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'the rebuild threshold moves by one change: only the cost differs, never the order' },
  { file: 'agent/indexes/container-index.ts', line: 61, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'reachable only with a `before` the index never recorded, which no caller passes' },
  { file: 'agent/client.ts', line: 105, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'a replaced connection is never OPEN again, so `readyState !== OPEN` alone drops its frames' },
  { file: 'agent/client.ts', line: 152, mutator: 'ConditionalExpression', kind: 'equivalent', reason: '`undefined > 0` is false: the undefined check only names the case' },
  { file: 'agent/client.ts', line: 156, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 're-arming the silence timer with an unchanged timeout right after a frame is what the frame did already' },
  { file: 'agent/client.ts', line: 225, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'the move timer is cleared whenever the connection changes, so the guard never sees another socket' },
  { file: 'agent/auth.ts', line: 29, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'after the "::ffff:" prefix the first character is never a dot' },
  { file: 'agent/auth.ts', line: 63, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'isSuperApp(undefined) is false: the undefined check only names the case' },
  { file: 'agent/auth.ts', line: 74, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'with no app of its own the caller matches no rule below, which also returns false' },
  { file: 'agent/persist.ts', line: 134, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'a file of exactly the header is refused either way (bad magic, or a payload that does not decode): only the log text differs' },
  { file: 'agent/persist.ts', line: 243, mutator: 'BlockStatement', kind: 'open', reason: 'closing the temp file\'s descriptor: a leak shows only in a count of open descriptors, which no test takes yet' },
  { file: 'agent/persist.ts', line: 248, mutator: 'BlockStatement', kind: 'open', reason: 'the directory fsync and its close: losing the fsync shows only after a power cut; the close, in a descriptor count' },
];
