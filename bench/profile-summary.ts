/**
 * Summarise V8 .cpuprofile files (from `node --cpu-prof`) into self time
 * per group (JSON, base64/Buffer, ioredis, IPC, sockets, GC, Celeriac's own
 * code, …) and the top functions by self time.
 *
 * Usage:
 *   node --import tsx bench/profile-summary.ts [--top N] [--window FROM,TO | --window-file F] [--json] FILE|DIR...
 *
 * --window limits the summary to samples taken between two timestamps in
 * the profile's own clock (µs, CLOCK_MONOTONIC: `process.hrtime.bigint() / 1000n`);
 * `bench/run.ts --profile` writes the drain's window to window.json beside
 * the profiles, and a DIR argument picks that file up by itself.
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  where: string;
  group: string;
  selfMs: number;
  pct: number;
}
export interface GroupTime {
  group: string;
  selfMs: number;
  pct: number;
}
export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  groups: GroupTime[];
  top: FunctionTime[];
}

/**
 * Group of a call frame, by heuristics on its URL and name; undefined for
 * "transparent" frames (V8 builtins and generic Node internals such as
 * node:buffer or node:events), whose time goes to the group of the nearest
 * caller that has one — so `writeBuffer` under `writeChannelMessage` counts
 * as IPC and under a socket write as sockets, and `indexOf` under ioredis's
 * parser as ioredis.
 */
export function groupOf(f: CallFrame): string | undefined {
  const name = f.functionName;
  const url = f.url;
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)' || name === '(root)') return 'V8/native (unattributed)';
  if (url === '') {
    if (/^(parse|stringify|JSON\.parse|JSON\.stringify)$/.test(name) || name.startsWith('Json')) return 'JSON (V8 parse/stringify)';
    if (/base64|Base64|atob|btoa/.test(name)) return 'Buffer/base64';
    if (name === 'runMicrotasks') return 'event loop (timers, microtasks, async hooks)';
    return undefined;
  }
  if (/node_modules\/(ioredis|redis-parser|@ioredis|denque|cluster-key-slot|standard-as-callback)\//.test(url)) return 'ioredis (commands, RESP encode/parse)';
  if (/node_modules\/(pino|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free|atomic-sleep|real-require|safe-stable-stringify)\//.test(url)) return 'logging (pino)';
  if (/node_modules\/(tsx|esbuild|get-tsconfig|resolve-pkg-maps)\//.test(url)) return 'module loading (tsx)';
  if (/node_modules\/zod\//.test(url)) return 'zod';
  if (/node_modules\/msgpackr/.test(url)) return 'msgpack';
  if (/node_modules\/(bullmq|bee-queue|redis)\//.test(url)) return 'queue library';
  if (url.includes('/node_modules/')) return 'other dependencies';
  if (url.startsWith('node:') || url.startsWith('internal/')) {
    if (/child_process/.test(url)) return 'IPC (child_process, v8 serialize)';
    if (/^node:net$|stream_base_commons|internal\/streams|^node:stream|^node:tls|_tls_/.test(url)) return 'sockets/streams (writes, reads)';
    if (/timers|task_queues|async_hooks|async_context|promise/.test(url)) return 'event loop (timers, microtasks, async hooks)';
    if (/crypto/.test(url)) return 'crypto (uuid, hash, sign)';
    if (/internal\/modules|process\/esm|internal\/vm/.test(url)) return 'module loading (tsx)';
    if (/^node:(buffer|events|util|string_decoder)$|internal\/(buffer|util|validators|errors|fixed_queue|abort_controller|event_target|url)/.test(url)) return undefined;
    return 'node internals (other)';
  }
  if (/\/(src|dist)\/codec\/json\.[tj]s$/.test(url)) return 'JSON (Celeriac codec: limits, safe parse)';
  if (/\/(src|dist)\/codec\//.test(url)) return 'Celeriac: codec (serializers, signing, encryption)';
  if (/\/(src|dist)\/protocol\//.test(url)) return 'Celeriac: protocol (messages, envelope, result meta)';
  if (/\/(src|dist)\/broker\//.test(url)) return 'Celeriac: broker adapter';
  if (/\/(src|dist)\/backend\//.test(url)) return 'Celeriac: result backend';
  if (/\/(src|dist)\/worker\/(pool|supervisor|child-main)/.test(url)) return 'Celeriac: pool/supervisor';
  if (/\/(src|dist)\/worker\//.test(url)) return 'Celeriac: worker';
  if (/\/(src|dist)\/security\//.test(url)) return 'Celeriac: security hooks';
  if (/\/(src|dist)\//.test(url)) return 'Celeriac: other';
  if (/\/bench\//.test(url)) return 'bench harness';
  return 'other';
}

function shortUrl(url: string): string {
  // Celeriac's own code, from TypeScript sources or the compiled package.
  const i = Math.max(url.lastIndexOf('/src/'), url.lastIndexOf('/dist/'));
  if (i >= 0 && !url.includes('/node_modules/', i)) return url.slice(i + 1);
  const j = url.lastIndexOf('/node_modules/');
  if (j >= 0) return url.slice(j + '/node_modules/'.length);
  return url.replace(/^file:\/\//, '');
}

export function summarize(file: string, profile: CpuProfile, options: { top?: number; window?: [number, number] } = {}): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const resolved = new Map<number, string>();
  const resolveGroup = (id: number): string => {
    const known = resolved.get(id);
    if (known) return known;
    const node = byId.get(id);
    let g = node ? groupOf(node.callFrame) : undefined;
    if (!g) {
      const p = parent.get(id);
      g = p === undefined ? 'V8/native (unattributed)' : resolveGroup(p);
    }
    resolved.set(id, g);
    return g;
  };
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  const n = profile.samples.length;
  for (let i = 0; i < n; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const dur = i + 1 < n ? (profile.timeDeltas[i + 1] ?? 0) : 0;
    if (options.window && (t < options.window[0] || t > options.window[1])) continue;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dur));
  }
  const fnTimes = new Map<string, { name: string; where: string; group: string; us: number }>();
  const groupTimes = new Map<string, number>();
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const f = node.callFrame;
    const group = resolveGroup(id);
    groupTimes.set(group, (groupTimes.get(group) ?? 0) + us);
    // Line numbers of tsx-compiled TypeScript do not match the source; show the file only.
    const where = !f.url ? '(native)' : f.url.endsWith('.ts') ? shortUrl(f.url) : `${shortUrl(f.url)}:${f.lineNumber + 1}`;
    const key = `${f.functionName}|${where}|${group}`;
    const e = fnTimes.get(key) ?? { name: f.functionName || '(anonymous)', where, group, us: 0 };
    e.us += us;
    fnTimes.set(key, e);
  }
  const idleUs = groupTimes.get('idle') ?? 0;
  const busyUs = totalUs - idleUs;
  const pct = (us: number): number => (busyUs > 0 ? Math.round((us / busyUs) * 1000) / 10 : 0);
  const groups = [...groupTimes]
    .filter(([g]) => g !== 'idle')
    .map(([group, us]) => ({ group, selfMs: Math.round(us / 100) / 10, pct: pct(us) }))
    .sort((a, b) => b.selfMs - a.selfMs);
  const top = [...fnTimes.values()]
    .filter((f) => f.group !== 'idle')
    .sort((a, b) => b.us - a.us)
    .slice(0, options.top ?? 25)
    .map((f) => ({ name: f.name, where: f.where, group: f.group, selfMs: Math.round(f.us / 100) / 10, pct: pct(f.us) }));
  return { file, totalMs: Math.round(totalUs / 100) / 10, busyMs: Math.round(busyUs / 100) / 10, groups, top };
}

export function renderSummary(s: ProfileSummary): string {
  const L: string[] = [];
  L.push(`### ${basename(s.file)}`, '', `Sampled ${s.totalMs.toFixed(0)} ms, busy (not idle) ${s.busyMs.toFixed(0)} ms; percentages are of busy time.`, '');
  L.push('| group | self ms | % |', '| --- | --- | --- |');
  for (const g of s.groups) L.push(`| ${g.group} | ${g.selfMs.toFixed(1)} | ${g.pct.toFixed(1)} |`);
  L.push('', '| function | where | group | self ms | % |', '| --- | --- | --- | --- | --- |');
  for (const f of s.top) L.push(`| ${f.name.replace(/\|/g, '\\|')} | ${f.where} | ${f.group} | ${f.selfMs.toFixed(1)} | ${f.pct.toFixed(1)} |`);
  L.push('');
  return L.join('\n');
}

/** Add up summaries (e.g. every pool child) into one, by group and by function. */
export function mergeSummaries(label: string, list: readonly ProfileSummary[], top = 25): ProfileSummary {
  const groups = new Map<string, number>();
  const fns = new Map<string, FunctionTime>();
  let totalMs = 0;
  let busyMs = 0;
  for (const s of list) {
    totalMs += s.totalMs;
    busyMs += s.busyMs;
    for (const g of s.groups) groups.set(g.group, (groups.get(g.group) ?? 0) + g.selfMs);
  }
  // Function tables are cut at `top` per file; merge what is there (good enough for the head of the list).
  for (const s of list) {
    for (const f of s.top) {
      const k = `${f.name}|${f.where}|${f.group}`;
      const e = fns.get(k) ?? { ...f, selfMs: 0, pct: 0 };
      e.selfMs += f.selfMs;
      fns.set(k, e);
    }
  }
  const pct = (ms: number): number => (busyMs > 0 ? Math.round((ms / busyMs) * 1000) / 10 : 0);
  return {
    file: label,
    totalMs: Math.round(totalMs * 10) / 10,
    busyMs: Math.round(busyMs * 10) / 10,
    groups: [...groups].map(([group, ms]) => ({ group, selfMs: Math.round(ms * 10) / 10, pct: pct(ms) })).sort((a, b) => b.selfMs - a.selfMs),
    top: [...fns.values()].map((f) => ({ ...f, selfMs: Math.round(f.selfMs * 10) / 10, pct: pct(f.selfMs) })).sort((a, b) => b.selfMs - a.selfMs).slice(0, top),
  };
}

/** Summaries for display: every child-*.cpuprofile added up first (when there are several), then each file. */
export function withChildrenMerged(list: readonly ProfileSummary[], top = 25): ProfileSummary[] {
  const children = list.filter((s) => basename(s.file).startsWith('child-'));
  return children.length > 1 ? [mergeSummaries(`all ${children.length} pool children`, children, top), ...list] : [...list];
}

/** Expand files and directories into .cpuprofile paths; a directory's window.json becomes the default window. */
export function collect(paths: readonly string[]): { files: string[]; window?: [number, number] } {
  const files: string[] = [];
  let window: [number, number] | undefined;
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p).sort()) if (f.endsWith('.cpuprofile')) files.push(join(p, f));
      const w = join(p, 'window.json');
      if (existsSync(w)) window = readWindow(w);
    } else files.push(p);
  }
  return { files, window };
}

function readWindow(file: string): [number, number] {
  const w = JSON.parse(readFileSync(file, 'utf8')) as { fromUs: number; toUs: number };
  return [w.fromUs, w.toUs];
}

export function summarizeFiles(paths: readonly string[], options: { top?: number; window?: [number, number] } = {}): ProfileSummary[] {
  const { files, window } = collect(paths);
  return files.map((f) => summarize(f, JSON.parse(readFileSync(f, 'utf8')) as CpuProfile, { top: options.top, window: options.window ?? window }));
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('profile-summary.ts')) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string' }, window: { type: 'string' }, 'window-file': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write('Usage: node --import tsx bench/profile-summary.ts [--top N] [--window FROM,TO | --window-file F] [--json] FILE|DIR...\n');
    process.exit(values.help ? 0 : 2);
  }
  let window: [number, number] | undefined;
  if (values.window) {
    const [a, b] = values.window.split(',').map(Number);
    window = [a!, b!];
  } else if (values['window-file']) window = readWindow(values['window-file']);
  const top = values.top ? Number(values.top) : 25;
  // Merge with deeper per-file tables so the merged top list is complete.
  const summaries = withChildrenMerged(summarizeFiles(positionals, { top: top * 4, window }), top).map((x) => ({ ...x, top: x.top.slice(0, top) }));
  process.stdout.write(values.json ? `${JSON.stringify(summaries, null, 2)}\n` : summaries.map(renderSummary).join('\n'));
}
