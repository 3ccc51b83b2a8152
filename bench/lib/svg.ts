// Hand-written SVG charts (no dependencies): a line chart with optional log axes and a
// grouped bar chart, both with axes, ticks, a legend and optional reference lines.

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];
const W = 800;
const H = 440;
const M = { top: 48, right: 215, bottom: 56, left: 72 };

export interface Series { name: string; points: Array<[number, number]>; dashed?: boolean }
export interface RefLine { value: number; label: string }

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  xLog?: boolean;
  yLog?: boolean;
  /** Horizontal reference lines (targets). */
  refLines?: RefLine[];
  /** Tick values on the x axis (default: computed). */
  xTicks?: number[];
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  categories: string[];
  series: Array<{ name: string; values: number[] }>;
  refLines?: RefLine[];
  yLog?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function label(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  if (a >= 1 || a === 0) return `${+v.toFixed(a >= 10 ? 0 : 1)}`;
  return `${+v.toPrecision(2)}`;
}

/** About `count` round tick values covering [lo, hi]. */
function linearTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

interface Axis { map(v: number): number; ticks: number[] }

function axis(lo: number, hi: number, log: boolean, from: number, to: number, ticks?: number[]): Axis {
  if (log) {
    const l0 = Math.log10(lo), l1 = Math.log10(hi);
    return { map: (v) => from + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0 || 1)) * (to - from), ticks: ticks ?? logTicks(lo, hi) };
  }
  const t = ticks ?? linearTicks(lo, hi);
  const a = Math.min(lo, t[0] ?? lo), b = Math.max(hi, t[t.length - 1] ?? hi);
  return { map: (v) => from + ((v - a) / (b - a || 1)) * (to - from), ticks: t };
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${(M.left + W - M.right) / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 14}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function yAxisLines(y: Axis): string[] {
  const out: string[] = [];
  for (const t of y.ticks) {
    const py = y.map(t).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${py}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>`);
  out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>`);
  return out;
}

function refLineSvg(y: Axis, refs: RefLine[] | undefined): string[] {
  return (refs ?? []).map((r) => {
    const py = y.map(r.value).toFixed(1);
    return `<line x1="${M.left}" x2="${W - M.right}" y1="${py}" y2="${py}" stroke="#555" stroke-dasharray="6 4"/>`
      + `<text x="${M.left + 6}" y="${Number(py) - 4}" fill="#555">${esc(r.label)}</text>`;
  });
}

function legend(names: Array<{ name: string; color: string; dashed?: boolean }>): string[] {
  return names.map((s, i) => {
    const y = M.top + 8 + i * 20;
    const x = W - M.right + 14;
    return `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`
      + `<text x="${x + 28}" y="${y}" dominant-baseline="middle">${esc(s.name)}</text>`;
  });
}

export function lineChart(o: LineChartOptions): string {
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const refs = (o.refLines ?? []).map((r) => r.value);
  const xs = pts.map(([x]) => x);
  const ys = [...pts.map(([, y]) => y), ...refs];
  const xlo = Math.min(...xs), xhi = Math.max(...xs);
  const ylo = o.yLog ? Math.min(...ys.filter((v) => v > 0)) / 1.5 : 0;
  const yhi = Math.max(...ys) * (o.yLog ? 1.5 : 1.1);
  const x = axis(o.xLog ? xlo : Math.min(0, xlo), xhi, !!o.xLog, M.left, W - M.right, o.xTicks);
  const y = axis(ylo, yhi, !!o.yLog, H - M.bottom, M.top);
  const body = yAxisLines(y);
  for (const t of x.ticks) {
    const px = x.map(t).toFixed(1);
    body.push(`<line x1="${px}" x2="${px}" y1="${H - M.bottom}" y2="${H - M.bottom + 5}" stroke="#333"/>`);
    body.push(`<text x="${px}" y="${H - M.bottom + 18}" text-anchor="middle">${label(t)}</text>`);
  }
  body.push(...refLineSvg(y, o.refLines));
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const p = s.points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)).map(([a, b]) => `${x.map(a).toFixed(1)},${y.map(b).toFixed(1)}`);
    if (p.length > 1) body.push(`<polyline fill="none" stroke="${color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${p.join(' ')}"/>`);
    for (const q of p) { const [cx, cy] = q.split(','); body.push(`<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"/>`); }
  });
  body.push(...legend(o.series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length], dashed: s.dashed }))));
  return frame(o.title, o.xLabel, o.yLabel, body);
}

export function barChart(o: BarChartOptions): string {
  const all = [...o.series.flatMap((s) => s.values), ...(o.refLines ?? []).map((r) => r.value)].filter(Number.isFinite);
  const lo = o.yLog ? Math.min(...all.filter((v) => v > 0)) / 2 : 0;
  const y = axis(lo, Math.max(...all) * (o.yLog ? 2 : 1.1), !!o.yLog, H - M.bottom, M.top);
  const body = yAxisLines(y);
  const groupW = (W - M.left - M.right) / o.categories.length;
  const barW = (groupW * 0.8) / o.series.length;
  o.categories.forEach((c, ci) => {
    const gx = M.left + ci * groupW + groupW * 0.1;
    o.series.forEach((s, si) => {
      const v = s.values[ci];
      if (!Number.isFinite(v)) return;
      const top = y.map(v);
      body.push(`<rect x="${(gx + si * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(H - M.bottom - top).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"/>`);
    });
    const words = c.split(' ');
    words.forEach((w, wi) => body.push(`<text x="${(gx + groupW * 0.4).toFixed(1)}" y="${H - M.bottom + 16 + wi * 13}" text-anchor="middle" font-size="11">${esc(w)}</text>`));
  });
  body.push(...refLineSvg(y, o.refLines));
  body.push(...legend(o.series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length] }))));
  return frame(o.title, '', o.yLabel, body);
}
