/**
 * Timestamps as Celery writes and reads them: ISO-8601 with microseconds,
 * `+00:00` for aware times (eta, expires), naive UTC for 5.2.6's date_done.
 */

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function isoCore(d: Date): string {
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}` +
    `.${pad(d.getUTCMilliseconds(), 3)}000`
  );
}

/** Aware UTC timestamp as Python's `datetime.isoformat()`: `2026-11-24T06:15:55.874000+00:00`. */
export function toIsoUtc(ms: number): string {
  return `${isoCore(new Date(ms))}+00:00`;
}

let lastNaiveMs = Number.NaN;
let lastNaive = '';

/** Naive UTC timestamp as Celery 5.2.6 writes `date_done`: `2026-11-24T06:15:52.531000`. */
export function toNaiveIsoUtc(ms: number): string {
  // Results finished in the same millisecond share the text (a worker stores many per millisecond).
  if (ms !== lastNaiveMs) {
    lastNaive = isoCore(new Date(ms));
    lastNaiveMs = ms;
  }
  return lastNaive;
}

const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Parse an ISO-8601 timestamp to epoch milliseconds. Naive timestamps are
 * read as UTC (Celery's default `timezone`). Returns `undefined` when the
 * text does not parse — including fields out of range (month 13, February
 * 30, hour 24, offset +25:00), which `Date.UTC` would silently roll over —
 * so callers can reject the message.
 */
export function parseIso(text: string): number | undefined {
  const m = ISO_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = s ? Number(s) : 0;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) return undefined;
  const msFrac = frac ? Number((frac + '000').slice(0, 3)) : 0;
  let t = Date.UTC(year, month - 1, day, hour, minute, second, msFrac);
  if (Number.isNaN(t)) return undefined;
  if (tz && tz !== 'Z') {
    const sign = tz.startsWith('-') ? -1 : 1;
    const digits = tz.slice(1).replace(':', '');
    const offH = Number(digits.slice(0, 2));
    const offM = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (offH > 23 || offM > 59) return undefined;
    t -= sign * (offH * 60 + offM) * 60_000;
  }
  return t;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}
