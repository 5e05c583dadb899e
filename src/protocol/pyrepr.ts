/**
 * Python reprs of JSON values for what Celery tools display: `argsrepr` and
 * `kwargsrepr` exactly as Celery's `saferepr` writes them (saferepr.ts), and
 * a best-effort Python `repr()` (`reprValue`, `reprString`) for exception
 * arguments and the CLI: containers nested deeper than `maxLevels` show as
 * `[...]`/`{...}`, and the text is cut at `maxLength` characters.
 */

import { PyTuple, pyNumber, saferepr } from './saferepr.ts';

export interface ReprOptions {
  maxLength?: number;
  maxLevels?: number;
}

const DEFAULT_MAX_LENGTH = 1024;
const DEFAULT_MAX_LEVELS = 3;

/** `argsrepr` as Celery writes it: `saferepr(tuple(args), 1024)` (saferepr.ts); `(2, 3)`, `(1,)`, `()`. */
export function reprArgs(args: readonly unknown[], options?: ReprOptions): string {
  const maxLength = options?.maxLength ?? DEFAULT_MAX_LENGTH;
  return flatArgs(args, maxLength) ?? saferepr(new PyTuple(args), maxLength, options?.maxLevels ?? DEFAULT_MAX_LEVELS);
}

/** `kwargsrepr` as Celery writes it: `saferepr(kwargs, 1024)`. */
export function reprKwargs(kwargs: Record<string, unknown>, options?: ReprOptions): string {
  const maxLength = options?.maxLength ?? DEFAULT_MAX_LENGTH;
  return flatKwargs(kwargs, maxLength) ?? saferepr(kwargs, maxLength, options?.maxLevels ?? DEFAULT_MAX_LEVELS);
}

// The send path's fast case (most tasks): flat scalars whose repr fits the budget, where saferepr cuts
// nothing and writes what Python's repr writes. Anything else (nesting, quotes, bytes, a long text)
// goes through saferepr. test/unit/protocol/saferepr.test.ts checks both give the same text.
function flatScalar(v: unknown): string | undefined {
  switch (typeof v) {
    case 'number':
      return pyNumber(v);
    case 'boolean':
      return v ? 'True' : 'False';
    case 'string':
      return v.includes("'") ? undefined : `'${v}'`;
    default:
      return v === null ? 'None' : undefined;
  }
}

function flatArgs(args: readonly unknown[], maxLength: number): string | undefined {
  if (args.length === 0) return '()';
  if (args.length > 32) return undefined;
  let out = '(';
  for (let i = 0; i < args.length; i++) {
    const r = flatScalar(args[i]);
    if (r === undefined) return undefined;
    out += i === 0 ? r : `, ${r}`;
    if (out.length > maxLength / 2) return undefined;
  }
  return args.length === 1 ? `${out},)` : `${out})`;
}

function flatKwargs(kwargs: Record<string, unknown>, maxLength: number): string | undefined {
  let out = '{';
  let n = 0;
  for (const key in kwargs) {
    if (!Object.hasOwn(kwargs, key)) continue;
    if (++n > 32 || key.includes("'")) return undefined;
    const r = flatScalar(kwargs[key]);
    if (r === undefined) return undefined;
    out += `${n === 1 ? '' : ', '}'${key}': ${r}`;
    if (out.length > maxLength / 2) return undefined;
  }
  return `${out}}`;
}

/** `repr(value)` for any JSON-like value. */
export function reprValue(value: unknown, options?: ReprOptions): string {
  return truncate(repr(value, 0, options), options?.maxLength);
}

function truncate(text: string, max = DEFAULT_MAX_LENGTH): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

function repr(v: unknown, level: number, options?: ReprOptions): string {
  const maxLevels = options?.maxLevels ?? DEFAULT_MAX_LEVELS;
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') return reprNumber(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return reprString(v);
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return `b'${Buffer.from(v).toString('latin1')}'`;
  if (Array.isArray(v)) {
    if (level >= maxLevels) return '[...]';
    return `[${v.map((x) => repr(x, level + 1, options)).join(', ')}]`;
  }
  if (typeof v === 'object') {
    if (level >= maxLevels) return '{...}';
    const entries = Object.entries(v as Record<string, unknown>).map(
      ([k, x]) => `${reprString(k)}: ${repr(x, level + 1, options)}`,
    );
    return `{${entries.join(', ')}}`;
  }
  return reprString(String(v));
}

function reprNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  return String(n);
}

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Python 3 str repr: single quotes unless the text has `'` and no `"`. */
export function reprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    const esc = ESCAPES[ch];
    if (esc) out += esc;
    else if (ch === quote) out += `\\${quote}`;
    else {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
      else out += ch;
    }
  }
  return quote + out + quote;
}
