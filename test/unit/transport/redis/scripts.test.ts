/**
 * The Redis scripts are files named with their key count, each with a
 * KEYS/ARGV header, each loaded by `scripts.ts`; no Lua is written inline
 * anywhere else in src/; a call with the wrong number of keys is refused
 * before it reaches Redis.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { fitsShape, keyShape, storeResults } from '../../../../src/transport/redis/scripts.ts';

const SRC = fileURLToPath(new URL('../../../../src/', import.meta.url));
const LUA = join(SRC, 'transport/redis/lua');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('redis scripts', () => {
  const files = readdirSync(LUA).filter((f) => f.endsWith('.lua'));

  it('every script file is named with its key count and has a KEYS/ARGV/Returns header', () => {
    assert.ok(files.length >= 12, `found ${files.length} scripts`);
    for (const f of files) {
      assert.match(f, /^[a-z][a-z-]*-(\d+|\d*n|\d+\+\d*n)\.lua$/, f);
      const header = readFileSync(join(LUA, f), 'utf8').split('\n').filter((l) => l.startsWith('--')).join('\n');
      assert.match(header, /^-- KEYS\[/m, `${f}: header lists KEYS`);
      assert.match(header, /^-- Returns/m, `${f}: header says what it returns`);
      const body = readFileSync(join(LUA, f), 'utf8');
      if (/ARGV/.test(body.replace(/^--.*$/gm, ''))) assert.match(header, /^-- ARGV/m, `${f}: header lists ARGV`);
    }
  });

  it('every script file is loaded by scripts.ts, and no Lua is inline elsewhere in src/', () => {
    const wrapper = readFileSync(join(SRC, 'transport/redis/scripts.ts'), 'utf8');
    for (const f of files) assert.ok(wrapper.includes(`load('${f}')`), `${f} is loaded by scripts.ts`);
    const inline = walk(SRC).filter((p) => p.endsWith('.ts') && /redis\.call\(|defineCommand\(/.test(readFileSync(p, 'utf8')));
    assert.deepEqual(inline.map((p) => p.slice(SRC.length)), ['transport/redis/scripts.ts'], 'only scripts.ts defines scripts');
  });

  it('reads the key count from the file name and checks calls against it', () => {
    assert.deepEqual(keyShape('unlock-1.lua'), { name: 'unlock', fixed: 1, perItem: 0 });
    assert.deepEqual(keyShape('dead-letter-3.lua'), { name: 'dead-letter', fixed: 3, perItem: 0 });
    assert.deepEqual(keyShape('publish-capped-n.lua'), { name: 'publish-capped', fixed: 0, perItem: 1 });
    assert.deepEqual(keyShape('store-2n.lua'), { name: 'store', fixed: 0, perItem: 2 });
    assert.deepEqual(keyShape('restore-2+n.lua'), { name: 'restore', fixed: 2, perItem: 1 });
    assert.deepEqual(keyShape('reserve-2+2n.lua'), { name: 'reserve', fixed: 2, perItem: 2 });
    assert.throws(() => keyShape('reserve.lua'), /does not end with its key count/);
    assert.throws(() => keyShape('ack-two.lua'), /does not end with its key count/);
    assert.ok(fitsShape(keyShape('ack-2.lua'), 2));
    assert.ok(!fitsShape(keyShape('ack-2.lua'), 3));
    assert.ok(fitsShape(keyShape('store-2n.lua'), 4));
    assert.ok(!fitsShape(keyShape('store-2n.lua'), 3));
    assert.ok(fitsShape(keyShape('reserve-2+2n.lua'), 6));
    assert.ok(!fitsShape(keyShape('reserve-2+2n.lua'), 5));
    assert.ok(!fitsShape(keyShape('reserve-2+2n.lua'), 1));
  });

  it('passes the key count and keys before the arguments', async () => {
    const sent: unknown[][] = [];
    const commands: Record<string, unknown> = {
      defineCommand(name: string) {
        commands[name] = (...args: unknown[]) => (sent.push(args), Promise.resolve(1));
      },
    };
    await storeResults(commands as unknown as Redis, 60, [
      { key: 'celery-task-meta-a', payload: Buffer.from('{}') },
      { key: 'celery-task-meta-b', payload: Buffer.from('[]') },
    ]);
    assert.equal(sent[0]![0], 2, 'numkeys: one per record');
    assert.deepEqual(sent[0]!.slice(1, 3), ['celery-task-meta-a', 'celery-task-meta-b']);
    assert.deepEqual(sent[0]!.slice(3, 6), [60, Buffer.from('{}'), Buffer.from('[]')]);
  });
});
