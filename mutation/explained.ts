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
  { file: 'agent/persist.ts', line: 144, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'an array not recognised is counted by the walk at the end, to the same number' },
  { file: 'agent/persist.ts', line: 145, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'a Map not recognised is counted by the walk at the end, to the same number' },
  { file: 'agent/persist.ts', line: 181, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'a piece that exactly fills the chunk\'s room goes to the next chunk instead: the same bytes, one write more' },
  { file: 'agent/persist.ts', line: 182, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'handing out an empty chunk is a write of no bytes: the file is the same' },
  { file: 'agent/persist.ts', line: 182, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above: an empty chunk handed out changes no byte' },
  { file: 'agent/persist.ts', line: 183, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'a piece that fits a fresh chunk gets a buffer of its own instead: the same bytes, one allocation more' },
  { file: 'agent/persist.ts', line: 183, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above, for a piece exactly a chunk long' },
  { file: 'agent/persist.ts', line: 209, mutator: 'ArithmeticOperator', kind: 'equivalent', reason: 'the tail\'s room is an upper bound with slack (the hubs key and 5 bytes of array header even without hubs, 5 header bytes per string where at most 3 are written): an error this size moves where the tail starts, not its bytes (test "the chunked encoder writes msgpackr\'s bytes whatever falls on a chunk\'s edge" sweeps the edges)' },
  { file: 'agent/persist.ts', line: 210, mutator: 'ArithmeticOperator', kind: 'equivalent', reason: 'as for line 209: within the estimate\'s slack' },
  { file: 'agent/persist.ts', line: 214, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'handing out an empty last chunk is a write of no bytes' },
  { file: 'agent/persist.ts', line: 214, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 229, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'when a sliced step lets the event loop turn: how often, not what is copied or written' },
  { file: 'agent/persist.ts', line: 229, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 229, mutator: 'ArithmeticOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 250, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'how often the copy yields; what it copies is the same (changes made meanwhile are laid over it either way)' },
  { file: 'agent/persist.ts', line: 250, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 250, mutator: 'UpdateOperator', kind: 'equivalent', reason: 'as above: n only paces the yields' },
  { file: 'agent/persist.ts', line: 260, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'with no changes made meanwhile the counting loop finds nothing to subtract' },
  { file: 'agent/persist.ts', line: 260, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 261, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'one step past the end reads undefined, which is no key of the overlay' },
  { file: 'agent/persist.ts', line: 263, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'how often the count yields; the count is the same' },
  { file: 'agent/persist.ts', line: 263, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 263, mutator: 'ArithmeticOperator', kind: 'equivalent', reason: 'as above' },
  { file: 'agent/persist.ts', line: 277, mutator: 'EqualityOperator', kind: 'equivalent', reason: 'a file of exactly the header is refused either way (bad magic, or a payload that does not decode): only the log text differs' },
  { file: 'agent/persist.ts', line: 350, mutator: 'StringLiteral', kind: 'equivalent', reason: 'the hubs last saved matter only once a revision was saved or loaded, and both set them' },
  { file: 'agent/persist.ts', line: 492, mutator: 'ArrayDeclaration', kind: 'equivalent', reason: 'a save always copies the hub list (copySteps): the fallback for a state without one is never taken' },
  { file: 'agent/persist.ts', line: 377, mutator: 'LogicalOperator', kind: 'open', reason: 'without the default slice the copy never lets the event loop turn: a test would watch the loop turn during the copy of a large state with the default options' },
  { file: 'agent/persist.ts', line: 438, mutator: 'ConditionalExpression', kind: 'equivalent', reason: 'a save starts only when none is running, so when it ends `running` is itself' },
  { file: 'agent/persist.ts', line: 453, mutator: 'BlockStatement', kind: 'open', reason: 'without it, changes go on being recorded for a copy that has ended until the next save starts a new list: memory only, which no test measures' },
  { file: 'agent/persist.ts', line: 476, mutator: 'BlockStatement', kind: 'open', reason: 'closing the temp file\'s descriptor: a leak shows only in a count of open descriptors, which no test takes yet' },
  { file: 'agent/persist.ts', line: 481, mutator: 'BlockStatement', kind: 'open', reason: 'the directory fsync and its close: losing the fsync shows only after a power cut; the close, in a descriptor count' },
];
