/**
 * Signed messages on the PostgreSQL engine: a worker verifying signatures
 * keeps its replay nonces in the database (`securityReplayStore: auto`
 * picks the PostgreSQL store), so a captured copy of a signed message that
 * already ran, put back in the queue, is dead-lettered as a replay and
 * never runs again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApp, type App } from '../../../src/client/app.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { startCeleriacWorker, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import { dropPgSchema, hasPostgres, pgAdmin, pgSchemaUrl } from '../../helpers/postgres.ts';
import { IN_CI, waitFor } from '../../helpers/services.ts';

const available = await hasPostgres();
if (!available && IN_CI) throw new Error('PostgreSQL is required in CI');
const ring = generateSigningKey('ed25519', 'pg-replay-k1');

describe('signed messages and replay protection on PostgreSQL', { skip: available ? false : 'PostgreSQL not reachable' }, () => {
  const { url, schema } = pgSchemaUrl('replay_e2e');
  let worker: CeleriacWorkerProcess | undefined;
  let client: App;

  before(() => {
    client = createApp({ brokerUrl: url, resultBackend: url, securitySigningKeys: ring.signingLine });
  });
  after(async () => {
    await client?.close();
    await worker?.stop();
    await dropPgSchema(schema);
  });

  it('runs a signed task once; its captured copy is dead-lettered as a replay', async () => {
    const id = newId();
    const r = await client.sendTask('tasks.add', [20, 1], {}, { taskId: id });
    // The attacker copies the signed row while it waits (no worker yet).
    const captured = (await pgAdmin(`SELECT queue, priority, headers, properties, content_type, content_encoding, body FROM "${schema}".messages WHERE queue = 'celery'`)).rows;
    assert.equal(captured.length, 1);
    assert.match(String(captured[0]!.headers), /celeriac_signature/);

    worker = await startCeleriacWorker({
      env: { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, CELERIAC_VERIFY_KEYS: ring.verifyingLine, CELERIAC_ENV: 'development', CELERIAC_LOG_FORMAT: 'json' },
      args: ['-P', 'solo', '-c', '2'],
    });
    assert.equal(await r.get({ timeoutMs: 20_000 }), 21);
    const nonces = (await pgAdmin(`SELECT count(*)::int AS n FROM "${schema}_replay".replay WHERE state = 'S'`)).rows[0]!.n as number;
    assert.ok(nonces >= 1, 'the nonce is settled in the database');

    const c = captured[0]!;
    await pgAdmin(
      `INSERT INTO "${schema}".messages (queue, priority, seq, state, headers, properties, content_type, content_encoding, body, published_at)
       VALUES ($1, $2, nextval('"${schema}".message_seq'), 0, $3, $4, $5, $6, $7, 0)`,
      [c.queue, c.priority, c.headers, c.properties, c.content_type, c.content_encoding, c.body],
    );
    await pgAdmin(`SELECT pg_notify($1, 'celery')`, [`${schema}_queue`]);
    const broker = await client.broker();
    await waitFor(async () => (await broker.deadLetters('celery')).length === 1, 15_000, 'the replayed copy dead-lettered');
    const [dead] = await broker.deadLetters('celery');
    assert.match(dead!.reason, /replayed message/);
    assert.equal(dead!.message?.headers.id, id);
    assert.equal(worker.logs().filter((l) => l.securityEvent === 'replayed_message' && l.messageId === id).length, 1);
  });
});
