// What each measurement hands back to bench/run.ts, and markdown helpers.

export interface TargetResult {
  /** The target as the issue states it. */
  target: string;
  /** What this run measured, short. */
  measured: string;
  /** null = could not be measured in this run. */
  met: boolean | null;
  /** When missed: by how much and what limits it. */
  note?: string;
}

export interface Chart { file: string; svg: string; caption: string }

export interface SectionResult {
  markdown: string;
  targets: TargetResult[];
  charts: Chart[];
  /** Raw numbers, written to results.json. */
  data: unknown;
}

export interface BenchContext {
  quick: boolean;
  /** Progress lines on stderr. */
  log(msg: string): void;
  /** Directory for temporary files of this run (removed at the end). */
  tmpDir: string;
}

export interface Measurement {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<SectionResult>;
}

export function table(head: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export function ms(v: number): string {
  if (!Number.isFinite(v)) return '–';
  return v >= 100 ? `${Math.round(v)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

export function pct(v: number): string {
  return Number.isFinite(v) ? `${Math.round(v * 100)}%` : '–';
}
