/**
 * Read Celery settings out of Python source WITHOUT executing it.
 *
 * Understood: assignments (`name = value`, `name: T = value`,
 * `app.conf.name = value`), `X.conf.update(k=v, …)` / `X.conf.update({…})`,
 * `Celery(…)` keyword arguments, and values made of str/bytes/number/bool/None
 * literals, lists, tuples, sets, dicts, `dict(k=v)`, string concatenation,
 * f-strings (kept as parts: literal text plus the expressions inside),
 * `os.environ['X']`, `os.environ.get('X', d)`, `os.getenv('X', d)`,
 * `env('X')`/`env.str('X')` (django-environ) as environment references, and
 * dotted names (`ssl.CERT_NONE`). Anything else becomes `dynamic` with its
 * source text, so a check can say "cannot tell statically".
 */
import { tokenize, type Token } from './tokenize.ts';

/** A Python value as far as it can be known without running the code. */
export type PyValue =
  | { k: 'str'; v: string; line: number; bytes?: boolean }
  | { k: 'num'; v: number; line: number }
  | { k: 'bool'; v: boolean; line: number }
  | { k: 'none'; line: number }
  | { k: 'list' | 'tuple' | 'set'; items: PyValue[]; line: number }
  | { k: 'dict'; entries: [PyValue, PyValue][]; line: number }
  /** An environment reference; `default` when the code gives one. */
  | { k: 'env'; name: string; default?: PyValue; line: number }
  /** The contents of a file: `open('/run/secrets/x').read()`, `Path('/x').read_text()` (`read` false until read). */
  | { k: 'file'; path: string; read: boolean; line: number }
  /** A dotted name such as `ssl.CERT_REQUIRED` or a variable. */
  | { k: 'name'; dotted: string; line: number }
  /** An f-string: literal text and expression parts, in order. */
  | { k: 'fstr'; parts: (string | PyValue)[]; line: number }
  /** `a + b` of strings. */
  | { k: 'concat'; parts: PyValue[]; line: number }
  /** Not understood; `text` is the expression's source, shortened. */
  | { k: 'dynamic'; text: string; line: number };

/** Where a setting was found. */
export interface PySetting {
  /** The name as written (`CELERY_BROKER_URL`, `broker_url`, `broker`). */
  name: string;
  value: PyValue;
  line: number;
  /** How it was given. */
  via: 'assign' | 'conf-attr' | 'conf-update' | 'celery-call';
}

/** What a file holds. */
export interface PyModule {
  settings: PySetting[];
  /** Module-level assignments of any name (for the hard-coded secret scan). */
  assignments: PySetting[];
  /** `config_from_object(…, namespace='X')` namespaces seen. */
  namespaces: string[];
  /** The file creates a Celery app or configures one. */
  celeryApp: boolean;
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Token[]) {}

  peek(o = 0): Token | undefined {
    return this.toks[this.i + o];
  }
  next(): Token | undefined {
    return this.toks[this.i++];
  }
  isOp(v: string, o = 0): boolean {
    const t = this.peek(o);
    return t?.t === 'op' && t.v === v;
  }
  eat(v: string): boolean {
    if (this.isOp(v)) {
      this.i++;
      return true;
    }
    return false;
  }
  atEnd(): boolean {
    return this.i >= this.toks.length;
  }
  /** Skip to after the current logical line. */
  skipLine(): void {
    while (!this.atEnd() && this.peek()!.t !== 'NEWLINE') this.i++;
    this.i++;
  }
  /** Skip one balanced expression (used when a value is not understood); returns its source text. */
  skipExpr(stopAt: readonly string[]): string {
    let depth = 0;
    const parts: string[] = [];
    while (!this.atEnd()) {
      const t = this.peek()!;
      if (t.t === 'NEWLINE') break;
      if (t.t === 'op') {
        if (depth === 0 && stopAt.includes(t.v)) break;
        if ('([{'.includes(t.v)) depth++;
        if (')]}'.includes(t.v)) {
          if (depth === 0) break;
          depth--;
        }
      }
      parts.push(t.t === 'str' ? JSON.stringify(t.v) : 'v' in t ? t.v : '');
      this.i++;
    }
    return parts.join(' ').slice(0, 120);
  }

  /** Parse an expression, stopping at one of `stopAt` at bracket depth 0. */
  expr(stopAt: readonly string[] = [',', ')', ']', '}', ':', '=']): PyValue {
    const start = this.i;
    const line = this.peek()?.line ?? 0;
    try {
      let v = this.term();
      // String concatenation with +; anything else makes the value dynamic.
      while (this.isOp('+')) {
        this.i++;
        const r = this.term();
        v = { k: 'concat', parts: [...(v.k === 'concat' ? v.parts : [v]), r], line };
      }
      // `a or b` / conditional expressions and other operators: not evaluated.
      const t = this.peek();
      if (t && t.t !== 'NEWLINE' && !(t.t === 'op' && stopAt.includes(t.v)) && !(t.t === 'op' && ')]}'.includes(t.v))) {
        if (t.t === 'name' && t.v === 'or' && v.k === 'env') {
          // os.environ.get('X') or 'default': keep the env reference, note the fallback as its default.
          this.i++;
          const d = this.expr(stopAt);
          return { ...v, default: d };
        }
        this.i = start;
        return { k: 'dynamic', text: this.skipExpr(stopAt), line };
      }
      return v;
    } catch {
      this.i = start;
      return { k: 'dynamic', text: this.skipExpr(stopAt), line };
    }
  }

  private term(): PyValue {
    const t = this.next();
    if (!t) throw new Error('end');
    const line = t.line;
    if (t.t === 'op' && t.v === '-' && this.peek()?.t === 'num') {
      const n = this.term();
      if (n.k === 'num') return { ...n, v: -n.v };
      throw new Error('neg');
    }
    if (t.t === 'str') {
      // Adjacent literals concatenate: "a" "b", f"x" "y".
      const pieces: PyValue[] = [this.strValue(t)];
      while (this.peek()?.t === 'str') pieces.push(this.strValue(this.next() as Extract<Token, { t: 'str' }>));
      if (pieces.length === 1) return this.postfix(pieces[0]!);
      if (pieces.every((p) => p.k === 'str')) return { k: 'str', v: pieces.map((p) => (p as { v: string }).v).join(''), line };
      const parts: (string | PyValue)[] = [];
      for (const p of pieces) {
        if (p.k === 'str') parts.push(p.v);
        else if (p.k === 'fstr') parts.push(...p.parts);
      }
      return { k: 'fstr', parts, line };
    }
    if (t.t === 'num') {
      const s = t.v.replace(/_/g, '');
      const v = /^0[xob]/i.test(s) ? Number(s) : Number.parseFloat(s);
      if (!Number.isFinite(v)) throw new Error('num');
      return { k: 'num', v, line };
    }
    if (t.t === 'op' && t.v === '(') {
      if (this.eat(')')) return { k: 'tuple', items: [], line };
      const first = this.expr([',', ')']);
      if (this.eat(')')) return this.postfix(first);
      const items = [first];
      while (this.eat(',')) {
        if (this.isOp(')')) break;
        items.push(this.expr([',', ')']));
      }
      if (!this.eat(')')) throw new Error('tuple');
      return { k: 'tuple', items, line };
    }
    if (t.t === 'op' && t.v === '[') {
      const items = this.seq(']');
      return this.postfix({ k: 'list', items, line });
    }
    if (t.t === 'op' && t.v === '{') {
      if (this.eat('}')) return { k: 'dict', entries: [], line };
      const first = this.expr([',', '}', ':']);
      if (this.eat(':')) {
        const entries: [PyValue, PyValue][] = [[first, this.expr([',', '}'])]];
        while (this.eat(',')) {
          if (this.isOp('}')) break;
          const key = this.expr([':', ',', '}']);
          if (!this.eat(':')) throw new Error('dict');
          entries.push([key, this.expr([',', '}'])]);
        }
        if (!this.eat('}')) throw new Error('dict');
        return { k: 'dict', entries, line };
      }
      const items = [first];
      while (this.eat(',')) {
        if (this.isOp('}')) break;
        items.push(this.expr([',', '}']));
      }
      if (!this.eat('}')) throw new Error('set');
      return { k: 'set', items, line };
    }
    if (t.t === 'name') {
      if (t.v === 'True' || t.v === 'False') return { k: 'bool', v: t.v === 'True', line };
      if (t.v === 'None') return { k: 'none', line };
      let dotted = t.v;
      while (this.isOp('.') && this.peek(1)?.t === 'name') {
        this.i++;
        dotted += `.${(this.next() as { v: string }).v}`;
      }
      // os.environ['X']
      if (this.isOp('[') && /(^|\.)environ$/.test(dotted)) {
        this.i++;
        const key = this.expr([']']);
        if (!this.eat(']') || key.k !== 'str') throw new Error('environ');
        return { k: 'env', name: key.v, line };
      }
      if (this.isOp('(')) {
        this.i++;
        const { args, kwargs } = this.callArgs();
        if (/(^|\.)(environ\.get|getenv)$/.test(dotted) || /^env(\.(str|url|int|bool|list|json))?$/.test(dotted)) {
          const name = args[0];
          if (name?.k !== 'str') throw new Error('env name');
          const def = args[1] ?? kwargs.find(([k]) => k === 'default')?.[1];
          return def ? { k: 'env', name: name.v, default: def, line } : { k: 'env', name: name.v, line };
        }
        if (dotted === 'dict' && args.length === 0) {
          return { k: 'dict', entries: kwargs.map(([k, v]) => [{ k: 'str', v: k, line: v.line }, v]), line };
        }
        if ((dotted === 'str' || dotted === 'list' || dotted === 'tuple' || dotted === 'set' || dotted === 'frozenset') && args.length === 1) {
          const a = args[0]!;
          if (dotted === 'str') return a;
          if (a.k === 'list' || a.k === 'tuple' || a.k === 'set') return { k: dotted === 'frozenset' ? 'set' : (dotted as 'list' | 'tuple' | 'set'), items: a.items, line };
        }
        if ((dotted === 'open' || dotted === 'Path' || dotted.endsWith('.Path') || dotted === 'io.open') && args[0]?.k === 'str') {
          return this.postfix({ k: 'file', path: args[0].v, read: false, line });
        }
        if (dotted === 'timedelta' || dotted.endsWith('.timedelta')) {
          const unit: Record<string, number> = { weeks: 604800, days: 86400, hours: 3600, minutes: 60, seconds: 1, milliseconds: 0.001 };
          let secs = args[0]?.k === 'num' ? args[0].v * 86400 : 0;
          for (const [k, v] of kwargs) {
            if (v.k !== 'num' || unit[k] === undefined) throw new Error('timedelta');
            secs += v.v * unit[k]!;
          }
          return { k: 'num', v: secs, line };
        }
        throw new Error('call');
      }
      return { k: 'name', dotted, line };
    }
    throw new Error('term');
  }

  /** Method calls on a value that keep it static: `"a,b".split(",")`, `.strip()`. */
  private postfix(v: PyValue): PyValue {
    while (this.isOp('.') && this.peek(1)?.t === 'name' && this.isOp('(', 2)) {
      const method = (this.peek(1) as { v: string }).v;
      this.i += 3;
      const { args } = this.callArgs();
      if (v.k === 'file' && (method === 'read' || method === 'read_text' || method === 'strip' || method === 'rstrip' || method === 'decode')) {
        v = { ...v, read: v.read || method === 'read' || method === 'read_text' };
      } else if (v.k === 'str' && method === 'split') {
        const sep = args[0]?.k === 'str' ? args[0].v : undefined;
        const items = (sep === undefined ? v.v.trim().split(/\s+/) : v.v.split(sep)).map((s) => ({ k: 'str' as const, v: s, line: v.line }));
        v = { k: 'list', items, line: v.line };
      } else if (v.k === 'str' && (method === 'strip' || method === 'lower' || method === 'upper' || method === 'encode' || method === 'decode')) {
        v = { k: 'str', v: method === 'strip' ? v.v.trim() : method === 'lower' ? v.v.toLowerCase() : method === 'upper' ? v.v.toUpperCase() : v.v, line: v.line };
      } else {
        throw new Error('method');
      }
    }
    return v;
  }

  private seq(close: string): PyValue[] {
    const items: PyValue[] = [];
    while (!this.isOp(close)) {
      items.push(this.expr([',', close]));
      if (!this.eat(',')) break;
    }
    if (!this.eat(close)) throw new Error('seq');
    return items;
  }

  /** Arguments after `(`, through the matching `)`. `**x` arguments are recorded as a dynamic keyword `**`. */
  callArgs(): { args: PyValue[]; kwargs: [string, PyValue][] } {
    const args: PyValue[] = [];
    const kwargs: [string, PyValue][] = [];
    while (!this.isOp(')')) {
      if (this.atEnd() || this.peek()!.t === 'NEWLINE') throw new Error('call');
      if (this.isOp('**') || this.isOp('*')) {
        const star = this.next() as { v: string };
        kwargs.push([star.v, this.expr([',', ')'])]);
      } else if (this.peek()?.t === 'name' && this.isOp('=', 1)) {
        const name = (this.next() as { v: string }).v;
        this.i++;
        kwargs.push([name, this.expr([',', ')'])]);
      } else {
        args.push(this.expr([',', ')']));
      }
      if (!this.eat(',')) break;
    }
    if (!this.eat(')')) throw new Error('call');
    return { args, kwargs };
  }

  /** Parse an f-string body into literal text and expression parts. */
  static fstring(body: string, line: number): PyValue {
    const parts: (string | PyValue)[] = [];
    let text = '';
    let i = 0;
    while (i < body.length) {
      const c = body[i]!;
      if (c === '{' && body[i + 1] === '{') {
        text += '{';
        i += 2;
        continue;
      }
      if (c === '}' && body[i + 1] === '}') {
        text += '}';
        i += 2;
        continue;
      }
      if (c === '{') {
        // Find the matching close brace, minding nested brackets and quotes.
        let depth = 0;
        let j = i + 1;
        let quote: string | undefined;
        let end = -1;
        let specAt = -1;
        for (; j < body.length; j++) {
          const d = body[j]!;
          if (quote) {
            if (d === quote) quote = undefined;
            continue;
          }
          if (d === '"' || d === "'") quote = d;
          else if ('([{'.includes(d)) depth++;
          else if (')]'.includes(d) || (d === '}' && depth > 0)) depth--;
          else if (d === '}') {
            end = j;
            break;
          } else if (depth === 0 && specAt < 0 && (d === '!' || d === ':') && body[j + 1] !== '=') specAt = j;
        }
        if (end < 0) return { k: 'dynamic', text: body.slice(0, 120), line };
        if (text) parts.push(text);
        text = '';
        const exprText = body.slice(i + 1, specAt >= 0 ? specAt : end).replace(/=\s*$/, '');
        const p = new Parser(tokenize(exprText).filter((t) => t.t !== 'NEWLINE').map((t) => ({ ...t, line })));
        const v = p.expr([]);
        parts.push(p.atEnd() ? v : { k: 'dynamic', text: exprText, line });
        i = end + 1;
        continue;
      }
      text += c;
      i++;
    }
    if (text) parts.push(text);
    return { k: 'fstr', parts, line };
  }

  private strValue(t: Extract<Token, { t: 'str' }>): PyValue {
    if (t.prefix.includes('f')) return Parser.fstring(t.v, t.line);
    return t.prefix.includes('b') ? { k: 'str', v: t.v, line: t.line, bytes: true } : { k: 'str', v: t.v, line: t.line };
  }
}

/** Parse a Python file's text. Never throws for bad input; never executes anything. */
export function parsePythonConfig(src: string): PyModule {
  const toks = tokenize(src);
  const p = new Parser(toks);
  const mod: PyModule = { settings: [], assignments: [], namespaces: [], celeryApp: false };
  const scanCalls = (from: number, to: number): void => {
    // Celery(...), X.conf.update(...), X.config_from_object(..., namespace=...) anywhere in the statement.
    for (let k = from; k < to; k++) {
      const t = toks[k]!;
      if (t.t !== 'name') continue;
      const prevDot = toks[k - 1]?.t === 'op' && (toks[k - 1] as { v: string }).v === '.';
      const open = toks[k + 1]?.t === 'op' && (toks[k + 1] as { v: string }).v === '(';
      if (!open) continue;
      const isConfUpdate = t.v === 'update' && prevDot && toks[k - 2]?.t === 'name' && (toks[k - 2] as { v: string }).v === 'conf';
      const isCelery = t.v === 'Celery' && (!prevDot || (toks[k - 2]?.t === 'name' && (toks[k - 2] as { v: string }).v === 'celery'));
      const isFromObject = t.v === 'config_from_object' && prevDot;
      if (!isConfUpdate && !isCelery && !isFromObject) continue;
      const sub = new Parser(toks);
      (sub as unknown as { i: number }).i = k + 2;
      let call: { args: PyValue[]; kwargs: [string, PyValue][] };
      try {
        call = sub.callArgs();
      } catch {
        continue;
      }
      if (isCelery || isConfUpdate) mod.celeryApp = true;
      if (isFromObject) {
        const ns = call.kwargs.find(([n]) => n === 'namespace')?.[1];
        if (ns?.k === 'str') mod.namespaces.push(ns.v);
        continue;
      }
      const via = isCelery ? 'celery-call' : 'conf-update';
      for (const [name, value] of call.kwargs) {
        if (name === '**' && value.k === 'dict') {
          for (const [kk, vv] of value.entries) if (kk.k === 'str') mod.settings.push({ name: kk.v, value: vv, line: vv.line, via });
        } else if (name !== '**' && name !== '*') {
          mod.settings.push({ name, value, line: value.line, via });
        }
      }
      for (const a of call.args) {
        if (a.k === 'dict') for (const [kk, vv] of a.entries) if (kk.k === 'str') mod.settings.push({ name: kk.v, value: vv, line: vv.line, via });
      }
    }
  };
  while (!p.atEnd()) {
    const start = (p as unknown as { i: number }).i;
    const first = p.peek()!;
    if (first.t === 'NEWLINE') {
      p.next();
      continue;
    }
    // Find the end of the logical line.
    let end = start;
    while (end < toks.length && toks[end]!.t !== 'NEWLINE') end++;
    scanCalls(start, end);
    const topLevel = first.indent === 0 || isConditionalBlock(toks, start);
    // name = value | name: T = value | X.conf.name = value
    if (first.t === 'name' && !['def', 'class', 'import', 'from', 'return', 'if', 'elif', 'else', 'for', 'while', 'with', 'try', 'except', 'finally', 'del', 'assert', 'raise', 'global', 'lambda'].includes(first.v)) {
      let target = first.v;
      p.next();
      while (p.isOp('.') && p.peek(1)?.t === 'name') {
        p.next();
        target += `.${(p.next() as { v: string }).v}`;
      }
      if (p.isOp(':') && !target.includes('.')) {
        p.next();
        p.skipExpr(['=']);
      }
      if (p.eat('=')) {
        const value = p.expr([]);
        const m = /^(?:.*\.)?conf\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(target);
        if (m) {
          mod.settings.push({ name: m[1]!, value, line: first.line, via: 'conf-attr' });
        } else if (!target.includes('.') && topLevel) {
          const s: PySetting = { name: target, value, line: first.line, via: 'assign' };
          mod.assignments.push(s);
        }
      }
    }
    (p as unknown as { i: number }).i = end + 1;
  }
  return mod;
}

/** Whether the line at `start` is indented only because it sits in an if/else/try block at module level (settings split by environment). */
function isConditionalBlock(toks: Token[], start: number): boolean {
  // Walk back to the previous line with a smaller indent and see what opened the block.
  const indent = toks[start]!.indent;
  for (let k = start - 1; k >= 0; k--) {
    const t = toks[k]!;
    if (t.t === 'NEWLINE') continue;
    if (t.indent < indent) {
      // Find the first token of that line.
      let s = k;
      while (s > 0 && toks[s - 1]!.t !== 'NEWLINE') s--;
      const head = toks[s]!;
      return head.t === 'name' && ['if', 'elif', 'else', 'try', 'except', 'finally', 'with'].includes(head.v) && head.indent === 0;
    }
  }
  return false;
}
