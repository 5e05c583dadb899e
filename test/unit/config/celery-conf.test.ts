/**
 * `inspect conf`'s table (src/config/celery-conf.ts): Celery's lower-case
 * names for the settings Celery has (checked against Celery 5.2.6's own
 * list when Python Celery is installed), Celeriac's own settings under their
 * camelCase names, `with_defaults`, and not one secret in the reply: URL
 * passwords, query secrets, sentinel passwords, signing and result key
 * rings, the `auth` key and its password, TLS options.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { generateResultKey } from '../../../src/codec/encryption.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { CELERY_SETTINGS, celeryConfName, celeryConfTable, withDefaultsArgument } from '../../../src/config/celery-conf.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { SETTING_NAMES } from '../../../src/config/schema.ts';
import { fakePrivateKeyPem } from '../../helpers/pki.ts';
import { hasPythonCelery, PYTHON } from '../../helpers/services.ts';

const ring = generateSigningKey('ed25519', 'conf-k1');
const resultKey = generateResultKey('conf-r1');
const SECRETS = ['Br0ker-S3cret-xyz', 'Back3nd-S3cret-xyz', 'Qu3ry-S3cret-xyz', 'Sent1nel-S3cret-xyz', 'KeyPa55-S3cret-xyz', 'Tls-S3cret-xyz', 'THROWAWAYTESTSTUBNOTAKEY'];
/** Every piece of key material of the rings (16+ characters). */
const keyPieces = [ring.signingLine, resultKey].flatMap((l) => l.split(/[\s:,]+/)).filter((p) => p.length >= 16);

const settings = resolveSettings({
  brokerUrl: `amqp://user:${SECRETS[0]}@mq.example:5672//`,
  resultBackend: `redis://:${SECRETS[1]}@cache.example:6379/1?password=${SECRETS[2]}`,
  brokerTransportOptions: { visibilityTimeout: 30, masterName: 'mymaster', sentinelKwargs: { password: SECRETS[3] }, maxQueueLength: 1000 },
  securitySigningKeys: ring.signingLine,
  resultEncryptionKeys: resultKey,
  securityKey: fakePrivateKeyPem('RSA'),
  securityKeyPassword: SECRETS[4],
  brokerUseSsl: { ca_certs: '/etc/ca.pem', password: SECRETS[5] },
  taskAcksLate: true,
  taskMaxRedeliveries: 7,
  workerControlAllow: ['@inspect'],
});

describe('inspect conf as Celery names it', () => {
  it('Celery names for Celery settings, Celeriac names for the rest', () => {
    const t = celeryConfTable(settings);
    assert.equal(t.task_acks_late, true);
    assert.equal(t.taskMaxRedeliveries, 7);
    assert.deepEqual(t.workerControlAllow, ['@inspect']);
    assert.equal(t.broker_url, 'amqp://user:***@mq.example:5672//');
    assert.match(String(t.result_backend), /^redis:\/\/:\*\*\*@cache\.example:6379\/1\?password=\*\*\*$/);
    assert.deepEqual(t.broker_transport_options, { visibility_timeout: 30, master_name: 'mymaster', sentinel_kwargs: { password: '********' }, maxQueueLength: 1000 });
    assert.equal(t.securitySigningKeys, '********', "Celery's HIDDEN_SETTINGS masks the whole value");
    assert.equal(t.security_key, '********');
    assert.equal(t.security_key_password, '********');
    for (const k of Object.keys(t)) assert.ok(/^[a-z_]+$/.test(k) ? CELERY_SETTINGS.has(k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())) : SETTING_NAMES.includes(k), k);
  });

  it('without with_defaults only what differs from the defaults; with it, the defaults too', () => {
    const t = celeryConfTable(settings);
    assert.equal(t.task_serializer, undefined);
    assert.equal(t.result_expires, undefined);
    const all = celeryConfTable(settings, { withDefaults: true });
    assert.equal(all.task_serializer, 'json');
    assert.equal(all.result_expires, 86_400);
    assert.deepEqual(all.accept_content, ['json']);
    assert.equal(all.taskMaxDeliveryCount, 20);
    assert.ok(Object.keys(all).length > Object.keys(t).length + 10);
  });

  it('with_defaults as Celery sends it (a boolean), or as text', () => {
    for (const v of [true, 'true', '1', 'yes']) assert.equal(withDefaultsArgument({ with_defaults: v }), true, String(v));
    for (const v of [false, 'false', '0', undefined, null, 'nope']) assert.equal(withDefaultsArgument({ with_defaults: v }), false, String(v));
  });

  it('no secret in the reply, with or without defaults', () => {
    for (const withDefaults of [false, true]) {
      const json = JSON.stringify(celeryConfTable(settings, { withDefaults }));
      const hits = [...SECRETS, ...keyPieces].filter((s) => json.includes(s));
      assert.deepEqual(hits, [], `withDefaults ${withDefaults}`);
    }
    assert.ok(keyPieces.length >= 2, 'the rings have key material to look for');
  });

  it('every lower-case name is a Celery setting (checked against Celery 5.2.6 itself)', { skip: !hasPythonCelery() && 'Python Celery is not installed' }, () => {
    const r = spawnSync(PYTHON, ['-c', 'import json; from celery.app.defaults import DEFAULTS; print(json.dumps(sorted(DEFAULTS)))'], { encoding: 'utf8' });
    const celery = new Set(JSON.parse(r.stdout) as string[]);
    // Settings of later Celery releases: security_key_password and task_default_queue_type (5.5), broker_connection_retry_on_startup (5.3).
    const later = new Set(['security_key_password', 'task_default_queue_type', 'broker_connection_retry_on_startup']);
    const named = SETTING_NAMES.map(celeryConfName).filter((n) => /^[a-z_]+$/.test(n));
    assert.deepEqual(named.filter((n) => !celery.has(n) && !later.has(n)), [], 'lower-case names Celery 5.2.6 does not have');
    const missed = SETTING_NAMES.filter((n) => !CELERY_SETTINGS.has(n) && celery.has(n.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)));
    assert.deepEqual(missed, [], 'settings Celery has that keep the Celeriac name');
  });
});
