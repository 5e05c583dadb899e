/**
 * `celeriac inspect beat_status` on the embedded SQLite broker: a beat node
 * (src/beat/control.ts over a memory beat store) and a node without the
 * command (a worker's KeyError): the beat's role and entries are printed,
 * the worker left out, control characters from the reply never reach the
 * terminal; --json prints the beat's reply; with no beat, exit 3.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { startBeatControl } from '../../../src/beat/control.ts';
import { compileSchedule } from '../../../src/beat/schedule.ts';
import { Exit, type CliIo } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';
import { createApp, type App } from '../../../src/client/app.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { startMailbox, type ControlServer } from '../../../src/control/mailbox.ts';
import { createControlGuard } from '../../../src/security/control-guard.ts';
import { createMemoryBeatStore } from '../../../src/transport/memory/beat-store.ts';

const logger = pino({ level: 'silent' });
const ENV = { CELERIAC_ENV: 'development' };

function io(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
  return { io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: {}, cwd: process.cwd() }, out: () => out, err: () => err };
}

describe('celeriac inspect beat_status', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-inspect-beat-'));
  const url = `sqlite://${join(dir, 'broker.db')}`;
  let app: App;
  const servers: ControlServer[] = [];
  const beatNode = 'beat.nightly.1@h';
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const c = io();
    const code = await main([...args, '-b', url, '-t', '1.5'], c.io);
    return { code, out: c.out(), err: c.err() };
  };

  before(async () => {
    app = createApp({ brokerUrl: url, logger, env: ENV });
  });
  after(async () => {
    for (const s of servers) await s.close();
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no beat on the broker: says so, exit 3', async () => {
    const r = await run(['inspect', 'beat_status']);
    assert.equal(r.code, Exit.TIMEOUT);
    assert.match(r.err, /no celeriac beat replied/);
  });

  it('prints the beat (role, entries), leaves the worker out, and strips control characters', async () => {
    const settings = resolveSettings({});
    const broker = await app.broker();
    const entries = compileSchedule({ report: { task: 'tasks.report', schedule: 30 } });
    const beat = { holder: 'h:1:\u001b[2Jevil', entries, isLeader: true, fencingToken: 4 };
    servers.push(await startBeatControl({ beat, store: createMemoryBeatStore('nightly'), namespace: 'nightly', nodeName: beatNode, settings, broker, guard: createControlGuard({ settings, env: ENV, logger, hostname: beatNode }), logger }));
    servers.push(await startMailbox({ broker, nodeName: 'w1@h', command: () => undefined, guard: createControlGuard({ settings, env: ENV, logger, hostname: 'w1@h' }), logger }));
    const r = await run(['inspect', 'beat_status']);
    assert.equal(r.code, Exit.OK, r.err);
    assert.match(r.out, /-> beat\.nightly\.1@h: leader \(fencing token 4\)  schedule nightly, holder h:1:\?\[2Jevil/);
    assert.match(r.out, /report\n\s+task\s+tasks\.report  every 30 s/);
    assert.match(r.out, /1 beat instance online/);
    assert.doesNotMatch(r.out, /w1@h/);
    assert.ok(!r.out.includes('\u001b'), 'no escape character reaches the terminal');
    const j = await run(['inspect', 'beat_status', '--json']);
    const parsed = JSON.parse(j.out) as Record<string, { role: string; fencingToken: number }>;
    assert.deepEqual(Object.keys(parsed), [beatNode]);
    assert.equal(parsed[beatNode]!.fencingToken, 4);
  });
});
