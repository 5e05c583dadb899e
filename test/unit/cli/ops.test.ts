/**
 * The operator's commands on the embedded SQLite broker: purge and dlq drop
 * ask first (refused without a terminal unless --yes), dlq list shows the
 * reason in a table or JSON, redrive moves a dead letter back, control
 * refuses bad usage and an unconfirmed shutdown, and inspect with no worker
 * says so (exit 3).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Exit, type CliIo } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';
import { table } from '../../../src/cli/ops-output.ts';
import { createApp, type App } from '../../../src/client/app.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { waitFor } from '../../helpers/services.ts';

function io(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
  return { io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: {}, cwd: process.cwd() }, out: () => out, err: () => err };
}

describe('celeriac purge, dlq, control, inspect (SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-ops-'));
  const url = `sqlite://${join(dir, 'broker.db')}`;
  const queue = 'ops-q';
  let app: App;
  const savedBroker = process.env.CELERIAC_BROKER_URL;
  before(() => {
    app = createApp({ brokerUrl: url, taskDefaultQueue: queue, logger: createLogger({ level: 'silent' }) });
  });
  after(async () => {
    await app.close();
    if (savedBroker === undefined) delete process.env.CELERIAC_BROKER_URL;
    else process.env.CELERIAC_BROKER_URL = savedBroker;
    rmSync(dir, { recursive: true, force: true });
  });
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const c = io();
    const code = await main([...args, '-b', url], c.io);
    return { code, out: c.out(), err: c.err() };
  };

  it('aligns table columns', () => {
    assert.equal(table(['a', 'bb'], [['xxx', 'y'], ['z', 'w']]), 'a    bb\nxxx  y\nz    w');
  });

  it('purge asks first: refused without a terminal, done with --yes', async () => {
    await app.sendTask('t.x', [1]);
    await app.sendTask('t.x', [2]);
    const refused = await run(['purge', '-Q', queue]);
    assert.equal(refused.code, Exit.USAGE);
    assert.match(refused.err, /--yes/);
    assert.equal(await (await app.broker()).queueLength(queue), 2);
    const done = await run(['purge', '-Q', queue, '--yes', '--json']);
    assert.equal(done.code, Exit.OK, done.err);
    assert.deepEqual(JSON.parse(done.out), { [queue]: 2 });
    assert.equal(await (await app.broker()).queueLength(queue), 0);
  });

  it('dlq list shows dead letters with their reason; redrive moves one back; drop asks first', async () => {
    const broker = await app.broker();
    const r = await app.sendTask('t.unknown', [1]);
    const c = await broker.consume([queue], { prefetch: 1 }, (d) => void d.deadLetter('unregistered task t.unknown'));
    await waitFor(async () => (await broker.deadLetters(queue)).length === 1, 5000, 'dead letter');
    await c.cancel();
    const list = await run(['dlq', 'list', '-Q', queue]);
    assert.equal(list.code, Exit.OK, list.err);
    assert.match(list.out, /^at\s+id\s+task\s+queue\s+reason$/m);
    assert.match(list.out, new RegExp(`${r.id}\\s+t\\.unknown\\s+${queue}\\s+unregistered task t\\.unknown`));
    assert.match(list.out, /1 dead letter\./);
    const show = await run(['dlq', 'show', r.id, '-Q', queue, '--json']);
    assert.equal((JSON.parse(show.out) as Array<{ headers: { id: string } }>)[0]!.headers.id, r.id);
    const redrive = await run(['dlq', 'redrive', '-Q', queue, '--to', 'ops-other']);
    assert.equal(redrive.code, Exit.OK, redrive.err);
    assert.match(redrive.out, /ops-q\.dlq: redriven 1 to ops-other/);
    assert.equal(await broker.queueLength('ops-other'), 1);
    // Dead-letter it again, then drop.
    const c2 = await broker.consume(['ops-other'], { prefetch: 1 }, (d) => void d.deadLetter('again'));
    await waitFor(async () => (await broker.deadLetters('ops-other')).length === 1, 5000, 'dead letter');
    await c2.cancel();
    assert.equal((await run(['dlq', 'drop', '-Q', 'ops-other'])).code, Exit.USAGE, 'drop without --yes and no terminal is refused');
    assert.equal((await broker.deadLetters('ops-other')).length, 1);
    const drop = await run(['dlq', 'drop', '-Q', 'ops-other', '--yes', '--json']);
    assert.deepEqual(JSON.parse(drop.out), { 'ops-other': 1 });
    assert.equal((await broker.deadLetters('ops-other')).length, 0);
  });

  it('control: usage errors, shutdown needs --yes, inspect with no worker exits 3', async () => {
    assert.equal((await run(['control', 'rate_limit', 'only-one-arg'])).code, Exit.USAGE);
    assert.equal((await run(['control', 'frobnicate'])).code, Exit.USAGE);
    assert.equal((await run(['inspect', 'nothing'])).code, Exit.USAGE);
    const shutdown = await run(['control', 'shutdown']);
    assert.equal(shutdown.code, Exit.USAGE);
    assert.match(shutdown.err, /EVERY worker/);
    const ping = await run(['inspect', 'ping', '-t', '0.3']);
    assert.equal(ping.code, Exit.TIMEOUT);
    assert.match(ping.err, /no worker replied/);
    const status = await run(['status', '-t', '0.3']);
    assert.equal(status.code, Exit.TIMEOUT);
  });
});
