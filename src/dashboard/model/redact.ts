/**
 * What the dashboard shows of a task's arguments, results and errors.
 *
 * Events carry them as Python reprs (`(2, 'alice@example.com')`,
 * `{'card': '4111…'}`, `ValueError('no user bob')`), written by workers we do
 * not control. By default the dashboard shows their shape and hides every
 * value: string and number literals become `'***'` and `***`, while
 * punctuation, `True`/`False`/`None`, dict keys and class names stay, so an
 * operator still sees how many arguments there were and which keyword
 * arguments were set. In clear (a separate permission the server checks),
 * the text is shown as sent, minus what the project's redaction hides
 * everywhere (URL credentials, secret-named fields, registered secrets:
 * src/config/redact.ts).
 */
import { redactAll } from '../../config/redact.ts';

const MASK = '***';

/** Longest text shown, in either mode (events already cap reprs at 1 KiB; tracebacks are longer). */
export const MAX_SHOWN = 16 * 1024;

function cap(text: string): string {
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text;
}

// Keywords of a repr that are not data.
const KEEP_WORDS = new Set(['True', 'False', 'None', 'Ellipsis', 'inf', 'nan', 'set', 'frozenset', 'dict', 'list', 'tuple']);

/**
 * Mask every literal value of a Python repr (or JSON text), keeping its
 * shape. Not a parser: a tokenizer that errs on hiding — an unterminated
 * string hides everything after its quote, and any character it does not
 * know as punctuation is masked.
 */
export function maskRepr(text: string): string {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    // String literal, with an optional prefix (b'', r'', u'', f'', rb'' …).
    const prefix = /^[bBrRuUfF]{1,2}(?=['"])/.exec(text.slice(i, i + 3));
    const q = prefix ? text[i + prefix[0].length]! : c;
    if (q === "'" || q === '"') {
      let j = i + (prefix ? prefix[0].length : 0) + 1;
      while (j < n && text[j] !== q) j += text[j] === '\\' ? 2 : 1;
      const end = Math.min(j + 1, n);
      // A dict key stays visible: it names the argument, not its value.
      let k = end;
      while (k < n && text[k] === ' ') k++;
      const isKey = text[k] === ':' && j < n;
      out += isKey ? redactAll(text.slice(i, end)) : `${q}${MASK}${q}`;
      i = end;
      if (j >= n) break;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(text[i + 1] ?? ''))) {
      let j = i + 1;
      while (j < n && (/[0-9a-zA-Z_.]/.test(text[j]!) || ((text[j] === '+' || text[j] === '-') && /[eE]/.test(text[j - 1]!)))) j++;
      out += MASK;
      i = j;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_.]/.test(text[j]!)) j++;
      const word = text.slice(i, j);
      // A name followed by `(` is a constructor (`Decimal(…)`, `datetime.date(…)`), `=` a keyword: both are shape.
      const next = text[j];
      out += KEEP_WORDS.has(word) || next === '(' || next === '=' || next === ':' ? word : MASK;
      i = j;
      continue;
    }
    if (c === '<') {
      // `<object at 0x…>` and other opaque reprs.
      const j = text.indexOf('>', i);
      out += `<${MASK}>`;
      i = j === -1 ? n : j + 1;
      continue;
    }
    if ('()[]{},:= \n\t*'.includes(c)) {
      out += c;
      i++;
      continue;
    }
    // Anything else (`…`, `@`, `/`, unicode): part of a value.
    if (!out.endsWith(MASK)) out += MASK;
    i++;
  }
  return out;
}

/** An exception repr (`ValueError('bad id 42')`): the type stays, the message is masked. */
export function maskException(text: string): string {
  return maskRepr(text);
}

/**
 * A traceback: the frames (file, line, function, source line) are code, not
 * data, and stay; the last line (`ValueError: bad id 42`) and any line that
 * does not look like a frame are masked after their first `:`.
 */
export function maskTraceback(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      if (/^\s*File ".*", line \d+/.test(line) || /^Traceback \(most recent call last\):$/.test(line) || line.trim() === '') return redactAll(line);
      // A frame's source line (indented code) is shown as code; its literals could be data, so mask them.
      if (/^\s{4,}/.test(line)) return maskRepr(line);
      const colon = line.indexOf(':');
      return colon > 0 && /^[\w.]+$/.test(line.slice(0, colon)) ? `${line.slice(0, colon)}: ${MASK}` : MASK;
    })
    .join('\n');
}

/** What to show of one text field. */
export type FieldKind = 'repr' | 'exception' | 'traceback';

/** The text shown for a field: masked by default, in clear (minus the project's redaction) when asked. */
export function shown(text: string | undefined, kind: FieldKind, clear: boolean): string | undefined {
  if (text === undefined) return undefined;
  const t = cap(text);
  if (clear) return redactAll(t);
  if (kind === 'traceback') return maskTraceback(t);
  return maskRepr(t);
}

/** A value from an `inspect` reply (arrays and objects from Celeriac, repr strings from Python) as text. */
export function replyText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
