/**
 * A tokenizer for the subset of Python that Celery configuration files use.
 * It never executes anything: it only splits text into tokens (names,
 * numbers, strings with their prefixes, operators) with line numbers, and
 * marks logical line ends (a newline outside brackets) and the indentation
 * of each logical line, which is all the parser needs.
 */

/** One token. `NEWLINE` ends a logical line; `indent` is the column of the line's first token. */
export type Token =
  | { t: 'name'; v: string; line: number; indent: number }
  | { t: 'num'; v: string; line: number; indent: number }
  | { t: 'str'; v: string; prefix: string; line: number; indent: number }
  | { t: 'op'; v: string; line: number; indent: number }
  | { t: 'NEWLINE'; line: number; indent: number };

const OPS = ['**=', '//=', '>>=', '<<=', '...', '->', ':=', '**', '//', '==', '!=', '<=', '>=', '<<', '>>', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=', '@='];

/** Decode the escapes of a non-raw Python string literal (the common ones; anything unknown is kept as written). */
function unescape(body: string): string {
  return body.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]*\}|[0-7]{1,3}|\r?\n|.)/g, (m, e: string) => {
    switch (e[0]) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': return String.fromCharCode(parseInt(e, 8));
      case 'x': case 'u': case 'U': return String.fromCodePoint(parseInt(e.slice(1), 16));
      case '\\': return '\\';
      case "'": return "'";
      case '"': return '"';
      case '\n': case '\r': return '';
      case 'a': return '\x07';
      case 'b': return '\b';
      case 'f': return '\f';
      case 'v': return '\v';
      default: return m;
    }
  });
}

/**
 * Split Python source into tokens. Unterminated strings and stray
 * characters never throw: the rest of the line becomes an `op` token the
 * parser will not understand, so a broken file yields fewer settings, never
 * a crash.
 */
export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  let depth = 0;
  let lineStart = true;
  let indent = 0;
  const n = src.length;
  const push = (tok: Token): void => {
    out.push(tok);
  };
  while (i < n) {
    const c = src[i]!;
    if (lineStart && depth === 0) {
      // Measure indentation of a new logical line; skip blank and comment-only lines.
      let col = 0;
      let j = i;
      while (j < n && (src[j] === ' ' || src[j] === '\t')) {
        col += src[j] === '\t' ? 8 - (col % 8) : 1;
        j++;
      }
      if (j >= n) break;
      if (src[j] === '\n' || src[j] === '\r' || src[j] === '#') {
        while (j < n && src[j] !== '\n') j++;
        if (j < n) {
          j++;
          line++;
        }
        i = j;
        continue;
      }
      indent = col;
      i = j;
      lineStart = false;
      continue;
    }
    if (c === '\n') {
      line++;
      i++;
      if (depth === 0) {
        push({ t: 'NEWLINE', line: line - 1, indent });
        lineStart = true;
      }
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && src[i] !== '\n') i++;
      continue;
    }
    if (c === '\\' && (src[i + 1] === '\n' || (src[i + 1] === '\r' && src[i + 2] === '\n'))) {
      i += src[i + 1] === '\n' ? 2 : 3;
      line++;
      continue;
    }
    if (c === ';' && depth === 0) {
      push({ t: 'NEWLINE', line, indent });
      i++;
      continue;
    }
    // String literal, with an optional prefix (r, b, u, f and combinations).
    const pm = /^([rRbBuUfF]{0,2})(['"])/.exec(src.slice(i, i + 4));
    if (pm && (pm[1] === '' || /^(r|u|b|f|br|rb|fr|rf)$/i.test(pm[1]!))) {
      const prefix = pm[1]!.toLowerCase();
      const q = pm[2]!;
      let j = i + pm[1]!.length;
      const triple = src.startsWith(q.repeat(3), j);
      const close = triple ? q.repeat(3) : q;
      j += close.length;
      const startLine = line;
      let body = '';
      let closed = false;
      while (j < n) {
        const ch = src[j]!;
        if (ch === '\\') {
          body += src.slice(j, j + 2);
          if (src[j + 1] === '\n') line++;
          j += 2;
          continue;
        }
        if (src.startsWith(close, j)) {
          j += close.length;
          closed = true;
          break;
        }
        if (ch === '\n') {
          if (!triple) break; // unterminated single-quoted string: stop at the line end
          line++;
        }
        body += ch;
        j++;
      }
      if (!closed) {
        push({ t: 'op', v: '<bad-string>', line: startLine, indent });
        i = j;
        continue;
      }
      push({ t: 'str', v: prefix.includes('r') ? body : unescape(body), prefix, line: startLine, indent });
      i = j;
      continue;
    }
    const nm = /^[A-Za-z_\u00c0-\uffff][A-Za-z0-9_\u00c0-\uffff]*/.exec(src.slice(i, i + 256));
    if (nm) {
      push({ t: 'name', v: nm[0], line, indent });
      i += nm[0].length;
      continue;
    }
    const num = /^(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?[jJ]?)/.exec(src.slice(i, i + 64));
    if (num && num[0] !== '' && /\d/.test(num[0])) {
      push({ t: 'num', v: num[0], line, indent });
      i += num[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i)) ?? c;
    if ('([{'.includes(op)) depth++;
    if (')]}'.includes(op)) depth = Math.max(0, depth - 1);
    push({ t: 'op', v: op, line, indent });
    i += op.length;
  }
  if (!lineStart) push({ t: 'NEWLINE', line, indent });
  return out;
}
