/**
 * Celery's `saferepr` (celery/utils/saferepr.py) for JSON-like values: what
 * Celery 5.2.6 writes in the `argsrepr`/`kwargsrepr` headers and the
 * `task-succeeded` event's `result`, reproduced from its observable
 * behaviour (vectors in test/unit/protocol/saferepr.test.ts were produced by
 * Celery itself). Facts that make it differ from Python's `repr`:
 *
 * - The value is written as a stream of tokens (brackets, separators,
 *   keys, strings, other scalars) while a budget of `maxlen` characters
 *   lasts. Each string or scalar is cut to what is left of the budget (at
 *   the last space within it, then `...`); once the budget is spent, the
 *   next token is dropped, `, ...` is written, and then only the closing
 *   brackets still pending (the one of the dropped token is lost with it).
 * - Containers nested `maxlevels` deep (3) are written `[...]`, `{...}`,
 *   `(...)`.
 * - Strings are quoted with `'` and only `'` is escaped (`\'`); newlines
 *   and backslashes stay as they are. Bytes are `b'<utf-8 text>'`, or their
 *   hex digits when they are not UTF-8.
 * - Numbers and booleans are `str()` of the value; `None` for null.
 */

/** A Python tuple (JavaScript has none): `(1, 2)`, `(1,)`, `()`. */
export class PyTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** Literal text: a bracket or a separator (a class, so no user value can pass for one). */
class Lit {
  constructor(
    readonly lit: string,
    /** False for closing brackets: they are written even past the budget. */
    readonly cut: boolean,
    readonly dir: 1 | 0 | -1,
  ) {}
}

const lit = (s: string, cut: boolean, dir: 1 | 0 | -1): Lit => new Lit(s, cut, dir);
const KV_SEP = lit(': ', true, 0);
const SEP = lit(', ', true, 0);
const BRACKETS = {
  dict: [lit('{', false, 1), lit('}', false, -1)],
  list: [lit('[', false, 1), lit(']', false, -1)],
  set: [lit('{', false, 1), lit('}', false, -1)],
  tuple: [lit('(', false, 1), lit(')', false, -1)],
  tuple1: [lit('(', false, 1), lit(',)', false, -1)],
} as const;

class Key {
  constructor(readonly value: unknown) {}
}
class Quoted {
  constructor(readonly value: string | Uint8Array) {}
}
class Text {
  constructor(readonly value: string) {}
}
/** End of a container: it may be seen again (recursion guard). */
class Done {
  constructor(readonly obj: object) {}
}

type Token = Lit | Key | Quoted | Text;
const isLit = (v: unknown): v is Lit => v instanceof Lit;

function* items(list: Iterable<unknown>): Generator<unknown> {
  let first = true;
  for (const v of list) {
    if (!first) yield SEP;
    first = false;
    yield v;
  }
}

function* entries(obj: Record<string, unknown> | Map<unknown, unknown>): Generator<unknown> {
  let first = true;
  for (const [k, v] of obj instanceof Map ? obj : Object.entries(obj)) {
    if (!first) yield SEP;
    first = false;
    yield new Key(k);
    yield KV_SEP;
    yield v;
  }
}

/** Yield each of `parts`, the last one being the shared rest of the parent (never copied). */
function* chain(head: Lit, body: Iterator<unknown>, done: Done, end: Lit, rest: Iterator<unknown>): Generator<unknown> {
  yield head;
  for (let r = body.next(); !r.done; r = body.next()) yield r.value;
  yield done;
  yield end;
  for (let r = rest.next(); !r.done; r = rest.next()) yield r.value;
}

/** Python's `str()` of a number decoded from JSON (integers as ints, others as floats). */
export function pyNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  // JSON.stringify writes integers below 1e21 as digits (a Python int); larger ones in exponent form (a float).
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return BigInt(n).toString();
  const [mant, e] = n.toExponential().split('e') as [string, string];
  const exp = Number(e);
  if (exp < -4 || exp >= 16) return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return String(n);
}

function container(v: object): { brackets: readonly [Lit, Lit]; body: Iterator<unknown>; empty: boolean } | undefined {
  if (v instanceof PyTuple) return { brackets: v.items.length === 1 ? BRACKETS.tuple1 : BRACKETS.tuple, body: items(v.items), empty: false };
  if (Array.isArray(v)) return { brackets: BRACKETS.list, body: items(v), empty: false };
  if (v instanceof Set) return { brackets: BRACKETS.set, body: items(v), empty: v.size === 0 };
  if (v instanceof Map) return { brackets: BRACKETS.dict, body: entries(v), empty: false };
  if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) return { brackets: BRACKETS.dict, body: entries(v as Record<string, unknown>), empty: false };
  return undefined;
}

/** The token stream, each token with the iterator it came from (see the module comment). */
function* stream(stack: Array<Iterator<unknown>>, maxLevels: number): Generator<[Token, Iterator<unknown>]> {
  const seen = new Set<object>();
  let level = 0;
  while (stack.length > 0) {
    const it = stack.shift()!;
    for (let r = it.next(); !r.done; r = it.next()) {
      const v = r.value;
      if (v instanceof Done) {
        seen.delete(v.obj);
        continue;
      }
      if (v instanceof Key) {
        yield [v, it];
        continue;
      }
      if (isLit(v)) {
        level += v.dir;
        yield [v, it];
        continue;
      }
      if (v === null || v === undefined) yield [new Text('None'), it];
      else if (typeof v === 'boolean') yield [new Text(v ? 'True' : 'False'), it];
      else if (typeof v === 'number') yield [new Text(pyNumber(v)), it];
      else if (typeof v === 'bigint') yield [new Text(v.toString()), it];
      else if (typeof v === 'string' || v instanceof Uint8Array) yield [new Quoted(v), it];
      else if (typeof v === 'object') {
        const c = container(v);
        if (!c) {
          yield [new Text(String(v)), it];
          continue;
        }
        if (c.empty) {
          yield [new Text('set()'), it];
          continue;
        }
        const [start, end] = c.brackets;
        if (maxLevels && level >= maxLevels) {
          yield [new Text(`${start.lit}...${end.lit}`), it];
          continue;
        }
        if (seen.has(v)) {
          yield [new Text(`<Recursion on ${Array.isArray(v) ? 'list' : 'dict'}>`), it];
          continue;
        }
        seen.add(v);
        stack.push(chain(start, c.body, new Done(v), end, it));
        break;
      } else yield [new Text(String(v)), it];
    }
  }
}

/** Code points, as Python counts and slices strings. */
const SURROGATE = /[\uD800-\uDFFF]/;
const cpLength = (s: string): number => (SURROGATE.test(s) ? [...s].length : s.length);
const cpSlice = (s: string, n: number): string => (SURROGATE.test(s) ? [...s].slice(0, n).join('') : s.slice(0, n));

/** Celery's `truncate`: at most `maxlen` characters, cut back to the last space, then `...`. */
function truncate(s: string, maxlen: number | undefined): string {
  if (!maxlen || cpLength(s) < maxlen) return s;
  const head = cpSlice(s, maxlen);
  const space = head.lastIndexOf(' ');
  return `${space >= 0 ? head.slice(0, space) : head}...`;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function bytesText(b: Uint8Array): string {
  try {
    return UTF8.decode(b);
  } catch {
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  }
}

function formatChars(v: string | Uint8Array, maxlen: number | undefined): string {
  if (typeof v === 'string') return `'${truncate(v, maxlen).replaceAll("'", "\\'")}'`;
  if (maxlen && v.length > maxlen) return `b'${bytesText(v.subarray(0, maxlen))}...'`;
  return `b'${bytesText(v)}'`;
}

/** Celery's `saferepr(value, maxlen, maxlevels)`; `maxlen` undefined: no limit. */
export function saferepr(value: unknown, maxlen?: number, maxLevels = 3): string {
  // A lone scalar is one token: written directly (the common task result), same text as the stream gives.
  if (maxlen === undefined || maxlen > 0) {
    if (value === null || value === undefined) return truncate('None', maxlen);
    if (typeof value === 'boolean') return truncate(value ? 'True' : 'False', maxlen);
    if (typeof value === 'number') return truncate(pyNumber(value), maxlen);
    if (typeof value === 'string') return formatChars(value, maxlen);
  }
  const stack: Array<Iterator<unknown>> = [[value][Symbol.iterator]()];
  let left = maxlen;
  let out = '';
  for (const [token, it] of stream(stack, maxLevels)) {
    if (left !== undefined && left <= 0) {
      out += ', ...';
      // The closing brackets still pending are written; the token just taken is not.
      stack.push(it);
      break;
    }
    const text = isLit(token) ? token.lit : token instanceof Key ? saferepr(token.value, left, maxLevels) : token instanceof Quoted ? formatChars(token.value, left) : truncate(token.value, left);
    out += text;
    if (left !== undefined) left -= cpLength(text);
  }
  for (const it of stack) {
    for (let r = it.next(); !r.done; r = it.next()) if (isLit(r.value) && !r.value.cut) out += r.value.lit;
  }
  return out;
}
