/**
 * The reference pages in docs/reference/ are generated from the code
 * (scripts/gen-docs.ts): this fails when a committed page differs from what
 * the code gives today — a setting added to src/config/options.ts, a flag
 * added to a command — and when the code names a CELERIAC_* variable the
 * environment page does not describe.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ENVIRONMENT, PRINTED_ONLY, interfaceFields, referencePages, variablesInSource } from '../../../scripts/gen-docs.ts';
import { unsafeEnvName, UNSAFE_OPTIONS } from '../../../src/config/policy.ts';
import { ROOT } from '../../helpers/celeriac-worker.ts';

describe('reference docs', () => {
  it('match the code (run `npm run docs` after changing settings, variables or flags)', async () => {
    for (const [path, text] of await referencePages()) {
      assert.equal(readFileSync(join(ROOT, path), 'utf8'), text, `${path} is out of date: run npm run docs`);
    }
  });

  it('list every field of AppSettings and TransportOptions', () => {
    const source = readFileSync(join(ROOT, 'src/config/options.ts'), 'utf8');
    const page = readFileSync(join(ROOT, 'docs/reference/settings.md'), 'utf8');
    const fields = [...interfaceFields(source, 'AppSettings'), ...interfaceFields(source, 'TransportOptions')];
    assert.ok(fields.length > 40, `found ${fields.length} settings`);
    for (const f of fields) {
      assert.match(page, new RegExp(`\\| \`${f.name}\` \\|`), f.name);
      assert.ok(f.doc.length > 0, `${f.name} has TSDoc`);
    }
  });

  it('describe every CELERIAC_* variable the code names', () => {
    const described = new Set([...ENVIRONMENT.map((v) => v.name), ...PRINTED_ONLY, ...UNSAFE_OPTIONS.map(unsafeEnvName)]);
    const missing = [...variablesInSource()].filter((n) => !described.has(n));
    assert.deepEqual(missing, [], 'add these to ENVIRONMENT in scripts/gen-docs.ts');
  });
});
