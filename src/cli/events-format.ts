/**
 * How `celeriac events` prints events: Celery's `--dump` lines, plain
 * lines, JSON lines, and the live view. Event text is untrusted: every
 * string is stripped of control characters before it reaches a terminal
 * (an escape sequence in a hostname could otherwise rewrite the screen).
 */
import { reprValue } from '../protocol/pyrepr.ts';
import type { CeleryEvent } from '../client/events/types.ts';
import type { EventState } from '../client/events/state.ts';

// C0 and C1 controls, DEL, and the Unicode bidirectional overrides.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** A string safe to print on a terminal: control characters shown as `\uXXXX`. */
export function safe(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Round half to even (Python's `round`). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Python's `str(datetime.utcfromtimestamp(ts))`: `YYYY-MM-DD HH:MM:SS[.ffffff]`,
 * with Python's rounding: the fraction of the second (split off exactly) to
 * the nearest microsecond, half to even.
 */
export function pyUtcTimestamp(ts: number): string {
  let seconds = Math.floor(ts);
  let us = roundHalfEven((ts - seconds) * 1e6);
  if (us >= 1_000_000) {
    seconds += 1;
    us -= 1_000_000;
  }
  const base = new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
  return us ? `${base}.${String(us).padStart(6, '0')}` : base;
}

// Fields Celery sends as floats: Python prints 2.0, not 2.
const FLOAT_FIELDS = new Set(['freq', 'runtime', 'local_received', 'timestamp']);

/** Python's `str()` of a decoded value, as `celery events --dump` prints field values. */
function pyStr(key: string, v: unknown): string {
  if (typeof v === 'string') return safe(v);
  if (typeof v === 'number' && FLOAT_FIELDS.has(key) && Number.isInteger(v)) return `${v}.0`;
  // The load averages are floats too (`os.getloadavg()`, rounded to 2 places): a whole 3.0 prints as 3.0.
  if (key === 'loadavg' && Array.isArray(v) && v.every((n) => typeof n === 'number')) {
    return `[${v.map((n: number) => (Number.isInteger(n) ? `${n}.0` : reprValue(n))).join(', ')}]`;
  }
  try {
    return safe(reprValue(v));
  } catch {
    return safe(String(v));
  }
}

const HUMAN_TYPES: Readonly<Record<string, string>> = { 'worker-offline': 'shutdown', 'worker-online': 'started', 'worker-heartbeat': 'heartbeat' };

/** Celery's dumper's name for an event type. */
function humanType(type: string): string {
  const t = type.toLowerCase();
  return HUMAN_TYPES[t] ?? t.replaceAll('-', ' ');
}

/**
 * A dumper with the layout of `celery events --dump`: `host [time] type: fields`,
 * task events with `name(uuid) args=… kwargs=…` remembered from `task-sent`
 * / `task-received`.
 */
export function createDumper(): (ev: CeleryEvent) => string {
  const names = new Map<string, string>();
  return (event) => {
    const ev: Record<string, unknown> = { ...event };
    const when = pyUtcTimestamp(ev.timestamp as number);
    const type = String(ev.type).toLowerCase();
    const hostname = safe(String(ev.hostname));
    delete ev.timestamp;
    delete ev.type;
    delete ev.hostname;
    const fields = (): string => Object.keys(ev).sort().map((k) => `${safe(k)}=${pyStr(k, ev[k])}`).join(', ');
    if (type.startsWith('task-')) {
      const uuid = String(ev.uuid);
      delete ev.uuid;
      let task: string;
      if (type === 'task-received' || type === 'task-sent') {
        task = `${pyStr('name', ev.name)}(${safe(uuid)}) args=${pyStr('args', ev.args)} kwargs=${pyStr('kwargs', ev.kwargs)}`;
        delete ev.name;
        delete ev.args;
        delete ev.kwargs;
        names.set(uuid, task);
        // Bounded like Celery's LRU of 4095 names.
        if (names.size > 0xfff) names.delete(names.keys().next().value as string);
      } else task = names.get(uuid) ?? '';
      const f = fields();
      return `${hostname} [${when}] ${humanType(type)}${f ? ':' : ''} ${task} ${f}`;
    }
    const f = fields();
    return `${hostname} [${when}] ${humanType(type)}${f ? ':' : ''} ${f}`;
  };
}

/** One short plain line per event (when stdout is not a terminal). */
export function plainLine(ev: CeleryEvent): string {
  const when = new Date(ev.timestamp * 1000).toISOString();
  const parts = [when, safe(ev.hostname), safe(ev.type)];
  if (typeof ev.uuid === 'string') parts.push(`${typeof ev.name === 'string' ? safe(ev.name) : ''}[${safe(ev.uuid)}]`);
  for (const k of ['active', 'processed', 'freq', 'runtime', 'result', 'exception', 'args', 'kwargs', 'queue']) {
    const v = ev[k];
    if (v !== undefined && v !== null) parts.push(`${k}=${typeof v === 'string' ? safe(v.length > 200 ? `${v.slice(0, 200)}…` : v) : safe(String(v))}`);
  }
  return parts.join(' ');
}

/** JSON line (JSON escapes every control character). */
export function jsonLine(ev: CeleryEvent): string {
  return JSON.stringify(ev);
}

const STATE_ORDER = ['PENDING', 'RECEIVED', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED', 'REJECTED'];

function cut(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
}

function age(seconds: number): string {
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

/** What the live view shows besides the state. */
export interface ViewInfo {
  source: string;
  received: number;
  malformed: number;
  dropped: number;
  lastTasks: number;
  width: number;
}

/** The live view as lines (without ANSI; the caller positions them). */
export function renderView(state: EventState, now: number, info: ViewInfo): string[] {
  const w = Math.max(40, info.width);
  const lines: string[] = [];
  const line = (s: string): void => void lines.push(cut(s, w));
  line(`celeriac events — ${info.source} — ${new Date(now * 1000).toISOString().slice(11, 19)} UTC — events ${info.received}, malformed ${info.malformed}${info.dropped ? `, dropped ${info.dropped}` : ''} — Ctrl-C to quit`);
  line('');
  const workers = state.workers().sort((a, b) => a.hostname.localeCompare(b.hostname));
  line(`Workers (${workers.filter((x) => state.isAlive(x, now)).length} online of ${workers.length})`);
  line(`  ${'HOSTNAME'.padEnd(32)} ${'STATUS'.padEnd(8)} ${'ACTIVE'.padStart(6)} ${'PROCESSED'.padStart(9)}  ${'LOAD'.padEnd(16)} SOFTWARE`);
  for (const x of workers) {
    const status = state.isAlive(x, now) ? 'ONLINE' : 'OFFLINE';
    const load = Array.isArray(x.loadavg) ? x.loadavg.map((n) => n.toFixed(2)).join(' ') : '';
    const sw = [x.sw_ident, x.sw_ver].filter(Boolean).map((s) => safe(String(s))).join(' ');
    line(`  ${cut(safe(x.hostname), 32).padEnd(32)} ${status.padEnd(8)} ${String(x.active ?? '').padStart(6)} ${String(x.processed ?? '').padStart(9)}  ${load.padEnd(16)} ${sw}`);
  }
  line('');
  const counts = state.countsByState();
  const states = [...STATE_ORDER, ...Object.keys(counts).filter((s) => !STATE_ORDER.includes(s))];
  line(`Tasks by state: ${states.map((s) => `${safe(s)} ${counts[s] ?? 0}`).join('  ')}   —   ${state.rate(now).toFixed(1)} done/s`);
  const types = state.taskTypes(now);
  if (types.length) {
    line(`  ${'NAME'.padEnd(32)} ${'TOTAL'.padStart(6)} ${'SUCCESS'.padStart(7)} ${'FAILURE'.padStart(7)} ${'ACTIVE'.padStart(6)} ${'DONE/S'.padStart(7)}`);
    for (const t of types) {
      const active = (t.byState.RECEIVED ?? 0) + (t.byState.STARTED ?? 0);
      line(`  ${cut(safe(t.name || '?'), 32).padEnd(32)} ${String(t.total).padStart(6)} ${String(t.byState.SUCCESS ?? 0).padStart(7)} ${String(t.byState.FAILURE ?? 0).padStart(7)} ${String(active).padStart(6)} ${t.rate.toFixed(1).padStart(7)}`);
    }
  }
  line('');
  line(`Last ${info.lastTasks} tasks`);
  line(`  ${'UUID'.padEnd(36)} ${'NAME'.padEnd(24)} ${'STATE'.padEnd(8)} ${'WORKER'.padEnd(24)} ${'RUNTIME'.padStart(8)} ${'AGE'.padStart(4)}  RESULT / EXCEPTION`);
  for (const t of state.recentTasks(info.lastTasks)) {
    const runtime = typeof t.runtime === 'number' ? `${t.runtime.toFixed(3)}s` : '';
    const outcome = t.state === 'FAILURE' || t.state === 'RETRY' ? (t.exception ?? '') : (t.result ?? '');
    line(`  ${cut(safe(t.uuid), 36).padEnd(36)} ${cut(safe(t.name ?? ''), 24).padEnd(24)} ${cut(safe(t.state), 8).padEnd(8)} ${cut(safe(t.worker ?? t.client ?? ''), 24).padEnd(24)} ${runtime.padStart(8)} ${age(now - t.lastSeen).padStart(4)}  ${safe(String(outcome))}`);
  }
  return lines;
}
