/**
 * What the dashboard shows of task data: shape without values by default,
 * the text (minus the project's secret redaction) in clear.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maskRepr, maskTraceback, shown } from '../../../src/dashboard/model/redact.ts';

describe('dashboard redaction of task data', () => {
  it('masks every literal of a Python repr and keeps its shape and keys', () => {
    assert.equal(maskRepr("(2, 'alice@example.com', 3.5e-3, -7)"), "(***, '***', ***, ***)");
    assert.equal(maskRepr("{'user': 'bob', 'card': '4111 1111 1111 1111', 'ok': True, 'n': None}"), "{'user': '***', 'card': '***', 'ok': True, 'n': None}");
    assert.equal(maskRepr('[{"a": [1, 2]}, "x\\"y"]'), '[{"a": [***, ***]}, "***"]');
    assert.equal(maskRepr("Decimal('12.50')"), "Decimal('***')");
    assert.equal(maskRepr("ValueError('no user 42')"), "ValueError('***')");
    assert.equal(maskRepr("b'\\x00secret'"), "'***'");
    assert.equal(maskRepr('<object object at 0x7f00>'), '<***>');
    assert.equal(maskRepr('secret_word'), '***', 'a bare word is data');
  });

  it('hides everything after an unterminated quote', () => {
    assert.equal(maskRepr("('abc"), "('***'");
  });

  it('keeps a traceback\'s frames and hides the exception message', () => {
    const tb = 'Traceback (most recent call last):\n  File "/app/tasks.py", line 3, in add\n    charge(card="4111")\nValueError: card 4111 declined';
    const out = maskTraceback(tb);
    assert.match(out, /File "\/app\/tasks\.py", line 3, in add/);
    assert.match(out, /ValueError: \*\*\*$/);
    assert.doesNotMatch(out, /4111/);
  });

  it('shows text in clear only when asked, still without URL credentials', () => {
    const text = "('redis://u:hunter2hunter2@host/0', 5)";
    assert.equal(shown(text, 'repr', false), "('***', ***)");
    const clear = shown(text, 'repr', true)!;
    assert.match(clear, /, 5\)$/);
    assert.doesNotMatch(clear, /hunter2/);
    assert.equal(shown(undefined, 'repr', true), undefined);
  });
});
