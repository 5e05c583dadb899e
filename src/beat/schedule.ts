/**
 * celeriac beat's schedule: typed entries (an interval, or a crontab in a
 * time zone) and Celery's `beat_schedule` shape, both compiled to one form
 * whose ticks are deterministic — every beat instance computes the same
 * tick times, so a tick can be claimed once across instances.
 *
 * Interval ticks are the multiples of the interval since the UNIX epoch
 * (plus an optional offset), not "every n seconds from start-up" as in
 * Celery: a start-up time differs per instance and would make two
 * instances disagree about which tick is due.
 */
import { CronExpressionParser, type CronExpression } from 'cron-parser';
import type { SendOptions } from '../client/task.ts';
import { ConfigError } from '../errors.ts';

/** What to do with ticks missed for longer than the grace period (downtime, not a leader change). */
export type CatchUp = 'skip' | 'runOnce';

/** Every `every` seconds (fractions allowed), on multiples of it since the epoch plus `offset` seconds. */
export interface IntervalSchedule {
  every: number;
  offset?: number;
}

/**
 * A crontab, Celery's fields (each a cron field: `*`, `*\/15`, `1-5`,
 * `mon,wed`, a number), in `timezone` (an IANA name; default the
 * `timezone` setting, else UTC). Celery's snake_case names are accepted.
 */
export interface CrontabSchedule {
  minute?: string | number;
  hour?: string | number;
  dayOfWeek?: string | number;
  dayOfMonth?: string | number;
  monthOfYear?: string | number;
  timezone?: string;
}

/** One entry as written by the user (typed, or Celery's shape). */
export interface BeatEntryInput {
  /** The task's registered name (Celeriac or Python). */
  task: string;
  /** Seconds (Celery's number or timedelta), an interval, or a crontab. */
  schedule: number | IntervalSchedule | CrontabSchedule | Record<string, unknown>;
  args?: readonly unknown[];
  kwargs?: Readonly<Record<string, unknown>>;
  /** Send options (Celery's `options`: queue, priority, expires, …; either spelling). */
  options?: Readonly<Record<string, unknown>>;
  /** Missed ticks older than the grace period: `skip` them, or send one message for them (`runOnce`, Celery's behaviour; default). */
  catchUp?: CatchUp;
}

/** A schedule: entry name → entry (Celery's `beat_schedule`). */
export type BeatScheduleInput = Readonly<Record<string, BeatEntryInput>>;

/** When an entry runs: deterministic tick times, ms since the epoch. */
export interface Timetable {
  /** A readable form for logs and `celeriac beat status`. */
  readonly describe: string;
  /** The latest tick at or before `t`, if any. */
  latestAtOrBefore(t: number): number | undefined;
  /** The first tick after `t`. */
  nextAfter(t: number): number;
  /** True when {@link countBetween} is exact whatever its cap (arithmetic, not tick by tick). */
  readonly exactCount: boolean;
  /** How many ticks lie in (`from`, `to`), both exclusive; a timetable that counts tick by tick (crontab) stops at `cap`. */
  countBetween(from: number, to: number, cap: number): number;
}

/** One compiled entry. */
export interface BeatEntry {
  name: string;
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: SendOptions;
  catchUp: CatchUp;
  timetable: Timetable;
}

/** An interval timetable. */
export function interval(everyS: number, offsetS = 0): Timetable {
  if (!Number.isFinite(everyS) || everyS <= 0) throw new ConfigError(`a beat interval must be a positive number of seconds, not ${String(everyS)}`, { hint: 'e.g. schedule: 30 or { every: 0.5 }' });
  const every = Math.round(everyS * 1000);
  if (every < 1) throw new ConfigError(`a beat interval of ${everyS} s is shorter than 1 ms`, { hint: 'use at least 0.001 seconds' });
  const offset = Math.round(offsetS * 1000) % every;
  return {
    describe: `every ${everyS} s`,
    exactCount: true,
    latestAtOrBefore: (t) => Math.floor((t - offset) / every) * every + offset,
    nextAfter: (t) => (Math.floor((t - offset) / every) + 1) * every + offset,
    // Arithmetic, so exact whatever the cap.
    countBetween: (from, to) => Math.max(0, Math.ceil((to - offset) / every) - Math.floor((from - offset) / every) - 1),
  };
}

const CRON_FIELDS = [
  ['minute', 'minute'],
  ['hour', 'hour'],
  ['dayOfMonth', 'day_of_month'],
  ['monthOfYear', 'month_of_year'],
  ['dayOfWeek', 'day_of_week'],
] as const;

/** A crontab timetable in `timezone` (IANA; daylight-saving changes follow the zone's rules). */
export function crontab(spec: CrontabSchedule | Record<string, unknown>, defaultTimezone = 'UTC'): Timetable {
  const raw = spec as Record<string, unknown>;
  const known = new Set(['timezone', 'tz', ...CRON_FIELDS.flat()]);
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length) throw new ConfigError(`unknown crontab field ${unknown.map((k) => JSON.stringify(k)).join(', ')}`, { hint: 'use minute, hour, day_of_week, day_of_month, month_of_year (or their camelCase forms) and timezone' });
  const fields = CRON_FIELDS.map(([camel, snake]) => {
    const v = raw[camel] ?? raw[snake];
    if (v === undefined) return '*';
    if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`crontab field ${snake} must be a string or a number`, { hint: "e.g. hour: '*/3' or hour: 7" });
    const text = String(v).replace(/\s+/g, '');
    if (!/^[\w*,/-]+$/.test(text)) throw new ConfigError(`crontab field ${snake} ${JSON.stringify(v)} is not a cron field`, { hint: "use numbers, names, *, ranges (1-5), steps (*/15) and lists (1,15)" });
    return text;
  });
  const tz = String(raw.timezone ?? raw.tz ?? defaultTimezone);
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
  } catch {
    throw new ConfigError(`unknown time zone ${JSON.stringify(tz)}`, { hint: 'use an IANA zone name such as Europe/Paris or UTC' });
  }
  const expression = fields.join(' ');
  const parse = (at: number): CronExpression => {
    try {
      return CronExpressionParser.parse(expression, { currentDate: new Date(at), tz });
    } catch (err) {
      throw new ConfigError(`crontab ${JSON.stringify(expression)} is not valid: ${(err as Error).message}`, { hint: 'check each field (minute hour day_of_month month_of_year day_of_week)' });
    }
  };
  parse(Date.now()); // fail at load, not at the first tick
  // Celery requires day_of_month AND day_of_week to match when both are restricted; classic cron takes either.
  const both = fields[2] !== '*' && fields[4] !== '*';
  const matchesBoth = (d: { getDate(): number; getDay(): number }, e: CronExpression): boolean =>
    !both || (e.fields.dayOfMonth.values.includes(d.getDate() as never) && (e.fields.dayOfWeek.values as number[]).some((w) => w % 7 === d.getDay()));
  const step = (at: number, dir: 'next' | 'prev'): number | undefined => {
    const e = parse(at);
    for (let i = 0; i < 5000; i++) {
      let d;
      try {
        d = dir === 'next' ? e.next() : e.prev();
      } catch {
        return undefined; // no such date (e.g. 31 February)
      }
      if (matchesBoth(d, e)) return d.getTime();
    }
    return undefined;
  };
  return {
    describe: `crontab ${expression} (${tz})`,
    exactCount: false,
    latestAtOrBefore: (t) => step(t + 1, 'prev'),
    nextAfter: (t) => step(t, 'next') ?? Number.POSITIVE_INFINITY,
    countBetween(from, to, cap) {
      // One iterator for the whole range (a parse per tick would make a long downtime slow to count).
      const e = parse(from);
      let n = 0;
      for (let i = 0; n < cap && i < cap * 50; i++) {
        let d;
        try {
          d = e.next();
        } catch {
          break;
        }
        if (d.getTime() >= to) break;
        if (matchesBoth(d, e)) n++;
      }
      return n;
    },
  };
}

/** Celery's option names (and Celeriac's) → `SendOptions`. */
const OPTION_NAMES: Record<string, keyof SendOptions> = {
  queue: 'queue',
  priority: 'priority',
  expires: 'expires',
  countdown: 'countdown',
  time_limit: 'timeLimit',
  timeLimit: 'timeLimit',
  soft_time_limit: 'softTimeLimit',
  softTimeLimit: 'softTimeLimit',
  ignore_result: 'ignoreResult',
  ignoreResult: 'ignoreResult',
  shadow: 'shadow',
  compression: 'compression',
};

function sendOptions(name: string, raw: Readonly<Record<string, unknown>> | undefined): SendOptions {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw ?? {})) {
    const key = Object.hasOwn(OPTION_NAMES, k) ? OPTION_NAMES[k] : undefined;
    if (!key) throw new ConfigError(`beat entry ${name}: unsupported option ${JSON.stringify(k)}`, { hint: `use ${Object.keys(OPTION_NAMES).filter((o) => !o.includes('_')).join(', ')}` });
    out[key] = v;
  }
  return out as SendOptions;
}

function timetableOf(name: string, schedule: BeatEntryInput['schedule'], defaultTimezone: string): Timetable {
  if (typeof schedule === 'number') return interval(schedule);
  if (schedule && typeof schedule === 'object') {
    const s = schedule as Record<string, unknown>;
    if ('every' in s) return interval(Number(s.every), s.offset === undefined ? 0 : Number(s.offset));
    return crontab(s, defaultTimezone);
  }
  throw new ConfigError(`beat entry ${name}: schedule must be seconds, { every }, or a crontab`, { hint: "e.g. schedule: 30, or schedule: { minute: '0', hour: '*/3', timezone: 'Europe/Paris' }" });
}

/** Compile a schedule (typed or Celery's `beat_schedule` shape); throws `ConfigError` naming the entry at fault. */
export function compileSchedule(input: BeatScheduleInput, options: { timezone?: string; catchUp?: CatchUp } = {}): BeatEntry[] {
  if (!input || typeof input !== 'object') throw new ConfigError('the beat schedule must be an object of entries', { hint: "e.g. { 'add-every-30s': { task: 'tasks.add', schedule: 30, args: [2, 2] } }" });
  const entries: BeatEntry[] = [];
  for (const [name, e] of Object.entries(input)) {
    if (!e || typeof e !== 'object' || typeof e.task !== 'string' || e.task === '') throw new ConfigError(`beat entry ${name} has no task name`, { hint: "give it task: 'module.task_name'" });
    if (e.args !== undefined && !Array.isArray(e.args)) throw new ConfigError(`beat entry ${name}: args must be a list`, { hint: 'e.g. args: [2, 2]' });
    if (e.kwargs !== undefined && (typeof e.kwargs !== 'object' || e.kwargs === null || Array.isArray(e.kwargs))) throw new ConfigError(`beat entry ${name}: kwargs must be an object`, { hint: "e.g. kwargs: { x: 1 }" });
    const catchUp = (e.catchUp ?? (e as { catch_up?: CatchUp }).catch_up ?? options.catchUp ?? 'runOnce') as CatchUp;
    if (catchUp !== 'skip' && catchUp !== 'runOnce') throw new ConfigError(`beat entry ${name}: catchUp must be skip or runOnce`, { hint: 'skip: drop ticks missed during downtime; runOnce: send one message for them' });
    entries.push({
      name,
      task: e.task,
      args: [...(e.args ?? [])],
      kwargs: { ...(e.kwargs ?? {}) },
      options: sendOptions(name, e.options),
      catchUp,
      timetable: withEntryName(name, () => timetableOf(name, e.schedule, options.timezone ?? 'UTC')),
    });
  }
  return entries;
}

/** Run `fn`, naming the entry in a `ConfigError` it throws. */
function withEntryName<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError && !err.message.startsWith('beat entry ')) {
      throw new ConfigError(`beat entry ${name}: ${err.message.replace(/ — .*$/s, '')}`, { hint: err.hint, cause: err });
    }
    throw err;
  }
}
