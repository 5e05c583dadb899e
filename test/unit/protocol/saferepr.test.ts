/**
 * Celery's saferepr, against vectors Celery 5.2.6 produced itself
 * (test/fixtures/saferepr/generate.py): argsrepr/kwargsrepr as Celeriac
 * senders write them, truncated by structure as Celery does.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { reprArgs, reprKwargs } from '../../../src/protocol/pyrepr.ts';
import { PyTuple, saferepr } from '../../../src/protocol/saferepr.ts';

type Vector = { args: unknown[]; kwargs: Record<string, unknown>; maxlen: number; argsrepr: string; kwargsrepr: string } | { value: unknown; repr: string };
const vectors = JSON.parse(readFileSync(new URL('../../fixtures/saferepr/vectors.json', import.meta.url), 'utf8')) as Vector[];

describe('saferepr (Celery 5.2.6 vectors)', () => {
  vectors.forEach((v, i) => {
    if ('repr' in v) {
      it(`vector ${i}: no length limit`, () => assert.equal(saferepr(v.value), v.repr));
      return;
    }
    it(`vector ${i}: maxlen ${v.maxlen}, ${JSON.stringify(v.args).slice(0, 40)}`, () => {
      assert.equal(saferepr(new PyTuple(v.args), v.maxlen), v.argsrepr, 'args');
      assert.equal(saferepr(v.kwargs, v.maxlen), v.kwargsrepr, 'kwargs');
      if (v.maxlen === 1024) {
        assert.equal(reprArgs(v.args), v.argsrepr, 'reprArgs (the header)');
        assert.equal(reprKwargs(v.kwargs), v.kwargsrepr, 'reprKwargs (the header)');
      }
    });
  });

  it('bytes: UTF-8 text, else hex digits; cut at maxlen', () => {
    // saferepr((b'abc', b'\xff\x00', b'x'*20), 1024) and saferepr((b'x'*20,), 8), from Celery.
    assert.equal(saferepr(new PyTuple([Buffer.from('abc'), Buffer.from([0xff, 0]), Buffer.from('x'.repeat(20))]), 1024), "(b'abc', b'ff00', b'xxxxxxxxxxxxxxxxxxxx')");
    assert.equal(saferepr(new PyTuple([Buffer.from('x'.repeat(20))]), 8), "(b'xxxxxxx...', ...");
  });
});

describe('saferepr of a lone scalar (the fast path)', () => {
  it('matches Celery', () => {
    // [saferepr(None, 3), saferepr(None, 4), saferepr(None, 5), saferepr(12345, 3), saferepr('abc', 2), saferepr(True, 1024)] in Celery 5.2.6.
    assert.deepEqual([saferepr(null, 3), saferepr(undefined, 4), saferepr(null, 5), saferepr(12345, 3), saferepr('abc', 2), saferepr(true, 1024)], ['Non...', 'None...', 'None', '123...', "'ab...'", 'True']);
  });
});

describe('argsrepr/kwargsrepr fast path for flat scalars', () => {
  it('writes exactly what saferepr writes, for any flat arguments', async () => {
    const fc = (await import('fast-check')).default;
    const scalar = fc.oneof(
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.string({ maxLength: 40 }),
      fc.string({ minLength: 300, maxLength: 700 }),
    );
    fc.assert(
      fc.property(fc.array(scalar, { maxLength: 12 }), fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 8 }), (args, kwargs) => {
        assert.equal(reprArgs(args), saferepr(new PyTuple(args), 1024));
        assert.equal(reprKwargs(kwargs), saferepr(kwargs, 1024));
      }),
      { numRuns: 2000 },
    );
  });
});
