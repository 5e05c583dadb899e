/**
 * results/latest.json (the issue's shape) and results/latest.md (medians,
 * min–max, anchor/Celeriac ratios, the targets, diagnostics, machine).
 */
import { higherIsBetter, median, WORKLOADS, type Row } from './common.ts';
import type { Machine } from './machine.ts';

export interface RssRun {
  system: string;
  idleMiB: number;
  maxMiB: number;
  lastMiB: number;
  /** Growth of the peak from the first third to the last third of the sampled drain, %. */
  growthPct: number;
  flat: boolean;
  seconds: number;
  drained: number;
  backlog: number;
  samples: number[];
}

export interface Diagnostic {
  system: string;
  workload: string;
  /** Worker process tree CPU per 1,000 tasks, ms. */
  workerCpuPer1k?: number;
  /** redis-server CPU per 1,000 tasks, ms. */
  redisCpuPer1k?: number;
  /** Client process CPU per 1,000 tasks, ms. */
  clientCpuPer1k?: number;
  /** Highest share of the machine's CPU used by other processes during a timed window, %. */
  foreignCpuPct?: number;
}

export interface RunInfo {
  rows: Row[];
  machine: Machine;
  date: string;
  command: string;
  rounds: number;
  durationMs: number;
  counts: Record<string, Record<string, number>>;
  unavailable: Array<{ system: string; workload: string; reason: string }>;
  notes: string[];
  diagnostics: Diagnostic[];
  rss: RssRun[];
  extraRows: Row[];
}

const ANCHORS = ['bullmq', 'bee-queue', 'celery'] as const;

function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '–';
  if (unit === 'ms') return v < 10 ? v.toFixed(3) : v.toFixed(1);
  if (unit === 'MiB') return v.toFixed(1);
  if (v >= 100) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(1);
}

function cell(r: Row | undefined): string {
  if (!r) return '';
  if (r.min === r.max) return `${fmt(r.median, r.unit)}`;
  return `${fmt(r.median, r.unit)} (${fmt(r.min, r.unit)}–${fmt(r.max, r.unit)})`;
}

function ratio(anchor: Row | undefined, base: Row | undefined): string {
  if (!anchor || !base || !base.median) return '';
  return `×${(anchor.median / base.median).toFixed(2)}`;
}

function find(rows: readonly Row[], system: string, workload: string): Row | undefined {
  return rows.find((r) => r.system === system && r.workload === workload);
}

interface Target {
  text: string;
  value: string;
  pass: boolean | undefined;
}

function targets(rows: readonly Row[], rss: readonly RssRun[]): Target[] {
  const m = (s: string, w: string): number | undefined => find(rows, s, w)?.median;
  const out: Target[] = [];
  const add = (text: string, a: number | undefined, b: number | undefined, op: '>=' | '<=', goal: number, show: (x: number) => string): void => {
    if (a === undefined || b === undefined || !b) {
      out.push({ text, value: 'not measured', pass: undefined });
      return;
    }
    const x = a / b;
    out.push({ text, value: show(x), pass: op === '>=' ? x >= goal : x <= goal });
  };
  const times = (x: number): string => `${x.toFixed(2)}×`;
  const c = 'celeriac';
  add('drain-c100 ≥ 3× BullMQ', m(c, 'drain-c100'), m('bullmq', 'drain-c100'), '>=', 3, times);
  add('drain-c100 ≥ 2× bee-queue', m(c, 'drain-c100'), m('bee-queue', 'drain-c100'), '>=', 2, times);
  const pools: Record<string, string> = { 'drain-c1': 'solo', 'drain-c10': 'threads ×10', 'drain-c100': 'prefork ×2' };
  const best = Object.keys(pools)
    .map((w) => ({ w, v: m('celery', w) }))
    .filter((x): x is { w: string; v: number } => x.v !== undefined)
    .sort((a, b) => b.v - a.v)[0];
  add(`drain-c100 ≥ 30× Python Celery's best pool${best ? ` (${pools[best.w]}, ${Math.round(best.v).toLocaleString('en-US')}/s)` : ''}`, m(c, 'drain-c100'), best?.v, '>=', 30, times);
  add('enqueue-100 ≥ 2× BullMQ', m(c, 'enqueue-100'), m('bullmq', 'enqueue-100'), '>=', 2, times);
  add('enqueue-100 ≥ 1× bee-queue', m(c, 'enqueue-100'), m('bee-queue', 'enqueue-100'), '>=', 1, times);
  add('enqueue-bulk ≥ 0.5× the pipelined-LPUSH floor', m(c, 'enqueue-bulk'), m('redis-floor', 'floor-lpush-pipelined'), '>=', 0.5, times);
  add('latency p50 ≤ 2× the raw LPUSH→BRPOP round trip', m(c, 'latency-p50'), m('redis-floor', 'floor-rtt-p50'), '<=', 2, times);
  add("latency p99 ≤ BullMQ's p50", m(c, 'latency-p99'), m('bullmq', 'latency-p50'), '<=', 1, times);
  const loss = (x: number): string => `${((1 - x) * 100).toFixed(1)}% slower than plain`;
  const lossCheck = (w: string, goal: number, text: string): void => {
    const v = m(c, w);
    const p = m(c, 'drain-c100');
    if (v === undefined || p === undefined) {
      out.push({ text, value: 'not measured', pass: undefined });
      return;
    }
    const x = v / p;
    out.push({ text, value: loss(x), pass: 1 - x <= goal });
  };
  lossCheck('drain-c100-ed25519', 0.15, 'Ed25519 signing + verification costs ≤ 15% of drain throughput');
  lossCheck('drain-c100-encrypted', 0.1, 'result encryption costs ≤ 10% of drain throughput');
  const rc = rss.find((r) => r.system === c);
  const rb = rss.find((r) => r.system === 'bullmq');
  add("worker RSS ≤ BullMQ's", rc?.maxMiB, rb?.maxMiB, '<=', 1, (x) => `${rc?.maxMiB.toFixed(1)} vs ${rb?.maxMiB.toFixed(1)} MiB (${x.toFixed(2)}×)`);
  out.push({ text: 'worker RSS flat while draining the backlog', value: rc ? `${rc.growthPct >= 0 ? '+' : ''}${rc.growthPct.toFixed(1)}% peak growth` : 'not measured', pass: rc ? rc.flat : undefined });
  return out;
}

export function renderMarkdown(info: RunInfo): string {
  const { rows, machine: mc } = info;
  const L: string[] = [];
  L.push('# Celeriac benchmark: latest run', '');
  L.push(`- **Date**: ${info.date}`);
  L.push(`- **Command**: \`${info.command}\``);
  L.push(`- **Machine**: ${mc.cpu}, ${mc.cores} cores, ${mc.ramGiB} GiB RAM, ${mc.os}`);
  L.push(`- **Software**: Node ${mc.node}, Redis ${mc.redis} (one private redis-server on loopback, no persistence), Python ${mc.python}, Celery ${mc.celery}, BullMQ ${mc.bullmq}, bee-queue ${mc.beeQueue}, ioredis ${mc.ioredis}`);
  L.push(`- **Rounds**: ${info.rounds} (systems in turns within each workload; RSS once), run time ${(info.durationMs / 60000).toFixed(1)} min`);
  L.push('');
  L.push('Cells are the median of the rounds with (min–max); `×` is the anchor divided by Celeriac (for rows where higher is better, below 1 means Celeriac is faster; for latency and memory, above 1 means Celeriac is better).', '');
  const systemsPresent = [...new Set(rows.map((r) => r.system))];
  const extraSystems = systemsPresent.filter((s) => !['celeriac', ...ANCHORS, 'redis-floor'].includes(s));
  const head = ['workload', 'unit', 'better', 'celeriac', ...extraSystems, 'bullmq', '×', 'bee-queue', '×', 'celery', '×', 'redis-floor'];
  L.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`);
  const workloads = [...WORKLOADS, ...new Set(rows.map((r) => r.workload).filter((w) => !(WORKLOADS as readonly string[]).includes(w)))];
  for (const w of workloads) {
    const wr = rows.filter((r) => r.workload === w);
    const un = info.unavailable.filter((u) => u.workload === w);
    if (wr.length === 0 && un.length === 0) continue;
    const unit = wr[0]?.unit ?? '';
    const base = find(rows, 'celeriac', w);
    const na = (s: string): string => (info.unavailable.some((u) => u.system === s && u.workload === w) ? 'n/a' : '');
    const cells = [
      w,
      unit,
      higherIsBetter(w) ? '↑' : '↓',
      cell(base) || na('celeriac'),
      ...extraSystems.map((s) => cell(find(rows, s, w)) || na(s)),
    ];
    for (const a of ANCHORS) {
      const r = find(rows, a, w);
      cells.push(cell(r) || na(a), ratio(r, base));
    }
    cells.push(cell(find(rows, 'redis-floor', w)));
    L.push(`| ${cells.join(' | ')} |`);
  }
  L.push('');
  if (info.rss.length > 0) {
    L.push('## Worker memory while draining the backlog', '');
    L.push('| system | backlog | drained | sampled for | RSS idle | RSS max | RSS at end | peak growth (first → last third) | flat |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of info.rss) {
      L.push(`| ${r.system} | ${r.backlog.toLocaleString('en-US')} | ${r.drained.toLocaleString('en-US')} | ${r.seconds.toFixed(1)} s | ${r.idleMiB.toFixed(1)} MiB | ${r.maxMiB.toFixed(1)} MiB | ${r.lastMiB.toFixed(1)} MiB | ${r.growthPct >= 0 ? '+' : ''}${r.growthPct.toFixed(1)}% | ${r.flat ? 'yes' : 'no'} |`);
    }
    L.push('', 'RSS is the sum over the worker process and its children (prefork pools), sampled every 250 ms from /proc.', '');
  }
  const t = targets(rows, info.rss);
  L.push("## Issue 7's targets (this run)", '', '| target | measured | met |', '| --- | --- | --- |');
  for (const x of t) L.push(`| ${x.text} | ${x.value} | ${x.pass === undefined ? '–' : x.pass ? 'yes' : '**no**'} |`);
  L.push('');
  const slower = t.filter((x) => x.pass === false).map((x) => x.text);
  if (slower.length > 0) L.push(`Where Celeriac falls short in this run: ${slower.join('; ')}.`, '');
  if (info.diagnostics.length > 0) {
    L.push('## CPU per 1,000 tasks (medians)', '', 'Worker = the worker process and its children; Redis = redis-server; client = the sending process; measured over the timed window from /proc (10 ms ticks). "Other load" is the highest share of all cores that processes outside the measurement used during any round\'s timed window: above a few % the machine was not quiet and the row is suspect.', '');
    L.push('| system | workload | worker CPU ms | redis CPU ms | client CPU ms | other load |', '| --- | --- | --- | --- | --- | --- |');
    for (const d of info.diagnostics) {
      const f = (v: number | undefined): string => (v === undefined ? '' : v.toFixed(1));
      L.push(`| ${d.system} | ${d.workload} | ${f(d.workerCpuPer1k)} | ${f(d.redisCpuPer1k)} | ${f(d.clientCpuPer1k)} | ${d.foreignCpuPct === undefined ? '' : `${d.foreignCpuPct.toFixed(0)}%`} |`);
    }
    L.push('');
  }
  if (info.extraRows.length > 0) {
    L.push('## Other brokers', '', '| system | workload | median | min–max | unit |', '| --- | --- | --- | --- | --- |');
    for (const r of info.extraRows) L.push(`| ${r.system} | ${r.workload} | ${fmt(r.median, r.unit)} | ${fmt(r.min, r.unit)}–${fmt(r.max, r.unit)} | ${r.unit} |`);
    L.push('');
  }
  L.push('## Counts and notes', '');
  for (const [system, c] of Object.entries(info.counts)) {
    L.push(`- ${system}: ${Object.entries(c).map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`).join(', ')}`);
  }
  for (const u of info.unavailable) L.push(`- not available: ${u.system} ${u.workload}: ${u.reason}`);
  for (const n of info.notes) L.push(`- ${n}`);
  L.push('');
  return `${L.join('\n')}`;
}

/** Collapse per-round values into rows. */
export function toRow(system: string, workload: string, values: readonly number[], unit: string, digits = 3): Row {
  const f = 10 ** digits;
  const r = (v: number): number => Math.round(v * f) / f;
  return { system, workload, median: r(median(values)), min: r(Math.min(...values)), max: r(Math.max(...values)), unit };
}

/** The part of latest.md that bench/README.md shows: header, main table, memory, targets (headings demoted). */
export function renderReadmeBlock(info: RunInfo): string {
  const md = renderMarkdown(info);
  const [head, ...sections] = md.split('\n## ');
  const keep = sections.filter((s) => s.startsWith('Worker memory') || s.startsWith("Issue 7's targets"));
  const body = head!.replace(/^# Celeriac benchmark: latest run\n\n/, '');
  return [body.trimEnd(), ...keep.map((s) => `#### ${s.trimEnd()}`)].join('\n\n');
}

/** Replace the block between the latest-results markers of a README text. */
export function spliceReadme(readme: string, block: string): string {
  const start = '<!-- latest-results:start -->';
  const end = '<!-- latest-results:end -->';
  const i = readme.indexOf(start);
  const j = readme.indexOf(end);
  if (i < 0 || j < i) return readme;
  return `${readme.slice(0, i + start.length)}\n${block}\n${readme.slice(j)}`;
}
