// A full garbage collection on demand, to hand memory back to the system after a one-off peak
// (an agent's initial sync: snapshot frames, decoding temporaries, the first state file). An
// idle process does not collect by itself, so that garbage would otherwise stay in its RSS.
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | null | undefined;

export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
