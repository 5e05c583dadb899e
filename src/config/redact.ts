/**
 * Redaction: the one place that knows how to hide secrets in URLs and text.
 * Every log line, error message and CLI output passes through here.
 */
import { estimateGuessesLog10 } from './weak-credentials.ts';

const MASK = '***';

/** Query parameters whose values are secrets. */
const SECRET_PARAMS = /^(password|passwd|pass|pwd|secret|token|access_token|refresh_token|client_secret|api_key|apikey|key_password|ssl_password|auth|sasl_password)$/i;

/**
 * Hide the password (and any secret query parameter) of a URL. Works on
 * strings that are not valid WHATWG URLs too (e.g. `redis://:pw@host`,
 * passwords with unencoded `@`, `/` or `?`), erring on the side of hiding
 * too much.
 */
export function redactUrl(url: string): string {
  return redactText(url);
}

// A URL-ish token: scheme:// followed by anything up to whitespace, a quote or angle bracket.
const URL_TOKEN_RE = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s'"<>`]+)/gi;
// ?password=... or &token=...
const PARAM_RE = /([?&;])([A-Za-z_]+)=([^&\s#'"]*)/g;
// "password": "two words"  (quoted value: mask up to the closing quote)
const QUOTED_FIELD_RE = /\b([A-Za-z_-]*(?:password|passwd|secret|token|api_?key|credentials?)[A-Za-z_-]*)(["']?\s*[:=]\s*)(["'])((?:\\.|(?!\3)[^\\])*)\3/gi;
// password=value  (unquoted value: mask up to a delimiter)
const FIELD_RE = /\b([A-Za-z_-]*(?:password|passwd|secret|token|api_?key)[A-Za-z_-]*)(\s*[:=]\s*)(?!["'\s])([^\s"',;}&)]+)/gi;
// Authorization: Basic xxx / Bearer xxx / "authorization": "..."
const AUTH_HEADER_RE = /\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)(?:(basic|bearer|digest|token|negotiate)\s+)?([^\s"',;}]+)/gi;

/** What follows the `@` of a URL's user info: a host (name, IPv4, [IPv6]) and maybe a port, up to `/ ? #` or the end. */
const HOST_AFTER_AT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::\d{0,5})?[.,;:)\]]*(?:[/?#]|$)/;

/**
 * Mask the userinfo password of one `scheme://…` token. The userinfo ends
 * at the last `@` that is followed by something shaped like a host (and
 * port), so passwords written with unencoded `@ / ? # :` are hidden whole;
 * failing that, at the last `@` before the first `?` or `#`, or else the
 * last `@` of the token — over-redacting the host is better than leaking a
 * password.
 */
function redactUrlToken(scheme: string, rest: string): string {
  let at = -1;
  for (let i = rest.lastIndexOf('@'); i > 0; i = rest.lastIndexOf('@', i - 1)) {
    if (HOST_AFTER_AT.test(rest.slice(i + 1))) {
      at = i;
      break;
    }
  }
  if (at === -1) {
    const q = rest.search(/[?#]/);
    at = rest.lastIndexOf('@', q === -1 ? undefined : q);
    if (q !== -1 && at === -1) at = rest.lastIndexOf('@');
  }
  if (at === -1) return scheme + rest;
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(':');
  if (colon === -1) return scheme + rest; // a user name alone is not a secret
  // A secret reference (see env.ts) names where the secret is, not the secret: keep it visible.
  if (/^\$\{(?:file|env):[^}]*\}$/.test(userinfo.slice(colon + 1))) return scheme + rest;
  return `${scheme}${userinfo.slice(0, colon)}:${MASK}${rest.slice(at)}`;
}

/** The secret stems of a field name (as in FIELD_RE), to find where the stem ends. */
const STEM_RE = /password|passwd|secret|token|api_?key|credentials?/gi;

/**
 * Whether a name the field rules matched really names a secret: its secret
 * stem ends the name, or is followed by a separator, a capital (camelCase)
 * or a digit — `redis_password`, `clientSecret`, `api_key2`, `PASSWORD` —
 * and not by more of an ordinary word: `secretary`, `tokenizer`,
 * `passwords`, `tokens` are English, not secrets (issue 20 #18).
 */
function namesSecret(name: string): boolean {
  for (const m of name.matchAll(STEM_RE)) {
    const next = name.charAt(m.index + m[0].length);
    if (next === '' || !/[a-z]/.test(next)) return true;
  }
  return false;
}

/** A value too ordinary to be a credential: one common word, no digit or symbol (`denied`, `failed`, `required`). */
function ordinaryWord(value: string): boolean {
  return /^[A-Za-z]{1,16}$/.test(value) && estimateGuessesLog10(value) < GUESSABLE_LOG10;
}

/**
 * A `;` list of URLs (Redis Sentinels, Celery's AMQP failover list) is one
 * token to URL_TOKEN_RE: each URL of it is redacted on its own, so every
 * password is masked and every host stays readable.
 */
function redactUrlList(scheme: string, rest: string): string {
  const parts = rest.split(/;(?=[a-z][a-z0-9+.-]*:\/\/)/i);
  if (parts.length === 1) return redactUrlToken(scheme, rest);
  return parts.map((p, i) => (i === 0 ? redactUrlToken(scheme, p) : p.replace(/^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is, (_x, s: string, r: string) => redactUrlToken(s, r)))).join(';');
}

/** Redact every URL credential, secret-looking field and Authorization header in free text. */
export function redactText(text: string): string {
  if (!text) return text;
  // Every rule below needs a `:` (URL, header, field) or a `=` (parameter, field): without either, nothing to mask
  // (two scans instead of five regular expressions, for the task events' args and results).
  if (!text.includes(':') && !text.includes('=')) return text;
  let out = text.replace(URL_TOKEN_RE, (_m, scheme: string, rest: string) => redactUrlList(scheme, rest));
  out = out.replace(PARAM_RE, (m, sep: string, name: string) => (SECRET_PARAMS.test(name) ? `${sep}${name}=${MASK}` : m));
  // With a scheme (`Bearer …`) always a credential; without one, "authorization: denied" is a sentence.
  out = out.replace(AUTH_HEADER_RE, (m, name: string, sep: string, scheme: string | undefined, value: string) =>
    scheme === undefined && ordinaryWord(value) ? m : `${name}${sep}${scheme ? `${scheme} ` : ''}${MASK}`,
  );
  out = out.replace(QUOTED_FIELD_RE, (m, name: string, sep: string, quote: string) => (namesSecret(name) ? `${name}${sep}${quote}${MASK}${quote}` : m));
  out = out.replace(FIELD_RE, (m, name: string, sep: string, value: string) => (value === MASK || !namesSecret(name) ? m : `${name}${sep}${MASK}`));
  return out;
}

/** Known secret values (e.g. loaded from *_FILE) that must be masked wherever they appear. */
const knownSecrets = new Set<string>();

/** Secrets estimated below 10^6 guesses are not masked as free text (see `registerSecret`). */
const GUESSABLE_LOG10 = 6;

/**
 * Register a secret value so `redactAll` masks it anywhere in text, in its
 * raw and percent-encoded forms. Short values are ignored (too many false
 * hits), and so are values zxcvbn guesses within 10^6 tries: ordinary
 * words like `password` would otherwise be masked wherever they appear.
 */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 6) return;
  // A secret an attacker would guess within a million tries (`password`, `changeme`, `redis123`) is no
  // secret worth hiding in free text, while masking it would blank that ordinary word in every log
  // line (issue 20 #18). Such passwords are refused in production; URL and field rules still mask them.
  if (!value.includes('\n') && estimateGuessesLog10(value) < GUESSABLE_LOG10) return;
  knownSecrets.add(value);
  const encoded = encodeURIComponent(value);
  if (encoded !== value) knownSecrets.add(encoded);
  // A secret of several parts (a PEM key, a key ring: lines, or entries separated by spaces or commas): each
  // piece of key material is a secret on its own — never its prose (`# senders hold private keys`, `Proc-Type:
  // 4,ENCRYPTED`), which would otherwise blank those words wherever they appear (issue 20 #18).
  if (/[\s,]/.test(value)) for (const piece of keyMaterial(value)) knownSecrets.add(piece);
}

/** The pieces of a multi-part secret that look like key material: 16+ characters without spaces, not guessable, outside comments. */
function keyMaterial(value: string): string[] {
  const out: string[] = [];
  for (const line of value.split(/\r?\n/)) {
    const t = line.trim();
    if (t === '' || t.startsWith('#') || t.startsWith('-----')) continue;
    for (const piece of t.split(/[\s,]+/)) {
      if (piece.length >= 16 && estimateGuessesLog10(piece) >= GUESSABLE_LOG10) out.push(piece);
    }
  }
  return out;
}

/** Forget every registered secret (tests only). */
export function clearRegisteredSecrets(): void {
  knownSecrets.clear();
}

/**
 * Redact every registered secret value, then URL credentials and secret
 * fields. Known secrets go first: the pattern rules could otherwise cut a
 * secret in two (e.g. at an `@` or `&` inside it) and leave a piece that no
 * longer matches.
 */
export function redactAll(text: string): string {
  let out = text;
  if (!out) return out;
  // Longest first, so a secret that contains another is masked whole.
  if (knownSecrets.size > 0) for (const s of [...knownSecrets].sort((a, b) => b.length - a.length)) if (out.includes(s)) out = out.split(s).join(MASK);
  return redactText(out);
}

/** Object keys whose values are never shown, whatever they hold. */
const SECRET_KEY_RE = /^(?:.*(?:password|passwd|secret|token|api_?key|private_?key|passphrase|credentials?)|authorization|proxy-authorization|cookie|set-cookie|key|pwd|pass)$/i;

/** Whether an object key names a secret (`password`, `clientSecret`, `Authorization`, `key`, …). */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY_RE.test(key);
}

/**
 * Deep copy of a value with secret-named keys masked and every string
 * passed through `redactAll`. Cycles and depth beyond 8 are cut off.
 */
export function redactValue(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return redactAll(value);
  if (value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return value;
  if (seen.has(value) || depth > 8) return '[…]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1, seen));
  if (value instanceof Error) {
    const copy = new Error(redactAll(value.message));
    copy.name = value.name;
    if (value.stack) copy.stack = redactAll(value.stack);
    return copy;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = isSecretKey(k) && v !== undefined && v !== null && v !== '' && typeof v !== 'boolean' ? MASK : redactValue(v, depth + 1, seen);
  }
  return out;
}
