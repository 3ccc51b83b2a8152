// Reading Prometheus text (GET /metrics of etcd, hubs and agents).

/** The value of the first sample named `name` (labels ignored unless given in `name`); NaN when absent. */
export function metricValue(text: string, name: string): number {
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** The sum of every sample of `name` whose labels contain all of `labels` ('k="v"' strings); NaN when none. */
export function metricSum(text: string, name: string, labels: string[] = []): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([^{\s]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (!labels.every((l) => (m[2] ?? '').includes(l))) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : NaN;
}
