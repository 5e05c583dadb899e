import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reprArgs, reprKwargs, reprString } from '../../../src/protocol/pyrepr.ts';
import { parseIso, toIsoUtc, toNaiveIsoUtc } from '../../../src/protocol/time.ts';

describe('Python repr', () => {
  it('matches Celery argsrepr/kwargsrepr from the vectors', () => {
    assert.equal(reprArgs([2, 3]), '(2, 3)');
    assert.equal(reprArgs([42]), '(42,)');
    assert.equal(reprArgs(['héllo', '日本語', 1.5, null, true]), "('héllo', '日本語', 1.5, None, True)");
    assert.equal(reprKwargs({ name: 'Zoë', emoji: '🚀', nested: { list: [1, 2, { k: 'v' }] } }), "{'name': 'Zoë', 'emoji': '🚀', 'nested': {'list': [1, 2, {...}]}}");
    assert.equal(reprArgs([]), '()');
  });
  it('quotes like Python', () => {
    assert.equal(reprString("it's"), '"it\'s"');
    assert.equal(reprString('a"b\'c'), "'a\"b\\'c'");
    assert.equal(reprString('line\nnext\x01'), "'line\\nnext\\x01'");
  });
  it('truncates long reprs', () => {
    // Celery: saferepr(('x' * 5000,), 1024) cuts the string to what is left of the budget, then ', ...'.
    assert.equal(reprArgs(['x'.repeat(5000)]), `('${'x'.repeat(1023)}...', ...`);
  });
});

describe('ISO-8601 times', () => {
  it('writes aware and naive forms as Python does', () => {
    const t = Date.UTC(2026, 10, 24, 6, 15, 55, 874);
    assert.equal(toIsoUtc(t), '2026-11-24T06:15:55.874000+00:00');
    assert.equal(toNaiveIsoUtc(t), '2026-11-24T06:15:55.874000');
  });
  it('reads offsets, Z, naive (as UTC) and microseconds', () => {
    const t = Date.UTC(2026, 10, 24, 6, 15, 55, 874);
    assert.equal(parseIso('2026-11-24T06:15:55.874959+00:00'), t);
    assert.equal(parseIso('2026-11-24T06:15:55.874959Z'), t);
    assert.equal(parseIso('2026-11-24T06:15:55.874959'), t);
    assert.equal(parseIso('2026-11-24T08:15:55.874+02:00'), t);
    assert.equal(parseIso('2026-11-24T01:15:55.874-0500'), t);
    assert.equal(parseIso('yesterday'), undefined);
  });
});
