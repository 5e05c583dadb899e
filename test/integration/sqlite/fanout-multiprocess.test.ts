/**
 * SQLite fanout across processes sharing one file: two subscriber
 * processes each get every broadcast of a third process exactly once and
 * in order, woken through the `fanout` wake channel (no polling loop).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { newId } from '../../../src/protocol/ids.ts';
import { sqliteUrlForPath } from '../../../src/transport/sqlite/location.ts';
import { sleep } from '../../helpers/services.ts';

const PROBE = fileURLToPath(new URL('./fanout-probe.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-fanout-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function probe(args: string[]): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', PROBE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

describe('sqlite fanout across processes', () => {
  it('every subscriber process gets each broadcast of another process exactly once, in order', async () => {
    const url = sqliteUrlForPath(join(dir, 'fanout.db'));
    const exchange = `ev-${newId().slice(0, 8)}`;
    const count = 50;
    const subs = [probe(['sub', url, exchange, String(count)]), probe(['sub', url, exchange, String(count)])];
    const deadline = Date.now() + 20_000;
    while (!subs.every((s) => s.out().includes('READY'))) {
      assert.ok(Date.now() < deadline, `subscribers not ready: ${subs.map((s) => s.out()).join(' | ')}`);
      await sleep(50);
    }
    const pub = probe(['pub', url, exchange, String(count)]);
    assert.equal(await pub.exited, 0, pub.out());
    const codes = await Promise.all(subs.map((s) => s.exited));
    for (const [i, s] of subs.entries()) {
      assert.equal(codes[i], 0, `subscriber ${i} got all ${count}: ${s.out()}`);
      const ns = s.out().split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
      assert.deepEqual(ns, Array.from({ length: count }, (_, k) => k));
    }
  });
});
