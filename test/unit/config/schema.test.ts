/**
 * The settings schema: every key typed, unknown keys refused with a
 * suggestion, Celery's spellings mapped, wrong types named; and config/
 * stays free of I/O layers.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { resolveSettings, SettingError, type AppSettingsInput } from '../../../src/config/options.ts';
import { editDistance, SETTING_NAMES, suggestSetting } from '../../../src/config/schema.ts';
import { ConfigError } from '../../../src/errors.ts';
import { interfaceFields } from '../../../scripts/gen-docs.ts';
import { ROOT } from '../../helpers/celeriac-worker.ts';

/** Resolve settings that the type system would refuse (what a JavaScript caller or a JSON file may pass). */
const resolveAny = (s: Record<string, unknown>) => resolveSettings(s as AppSettingsInput);

function refused(s: Record<string, unknown>, code: string): SettingError {
  let err: unknown;
  try {
    resolveAny(s);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SettingError, `expected a SettingError, got ${String(err)}`);
  assert.ok(err instanceof ConfigError);
  assert.equal(err.code, code);
  return err;
}

describe('unknown settings', () => {
  it('are refused with a did-you-mean in the spelling the user wrote', () => {
    for (const [given, meant] of [
      ['task_serialiser', 'task_serializer'],
      ['taskAckLate', 'taskAcksLate'],
      ['brokerUrll', 'brokerUrl'],
      ['CELERY_TASK_SERIALISER', 'CELERY_TASK_SERIALIZER'],
      ['BROKER_URI', 'BROKER_URL'],
      ['result_backed', 'result_backend'],
      ['securityMessageTTL', 'securityMessageTtl'],
      ['unsafe_allow_plaintxt', 'unsafe_allow_plaintext'],
    ] as const) {
      const err = refused({ [given]: 1 }, 'ERR_UNKNOWN_SETTING');
      assert.equal(err.setting, given);
      assert.equal(err.suggestion, meant, given);
      assert.match(err.message, new RegExp(`unknown setting "${given}"; did you mean "${meant}"\\?`));
    }
  });

  it('without a close match, point at the reference instead of guessing', () => {
    const err = refused({ completely_made_up_thing: true }, 'ERR_UNKNOWN_SETTING');
    assert.equal(err.suggestion, undefined);
    assert.match(err.message, /unknown setting "completely_made_up_thing"/);
    assert.match(err.hint ?? '', /settings\.md/);
  });

  it('inside brokerTransportOptions and decodeLimits too', () => {
    const t = refused({ broker_transport_options: { visibility_timout: 60 } }, 'ERR_UNKNOWN_SETTING');
    assert.equal(t.setting, 'broker_transport_options.visibility_timout');
    assert.equal(t.suggestion, 'visibility_timeout');
    const d = refused({ decodeLimits: { maxByte: 10 } }, 'ERR_UNKNOWN_SETTING');
    assert.equal(d.suggestion, 'maxBytes');
  });

  it('createApp refuses them before anything connects', () => {
    assert.throws(() => createApp({ brokerUrl: 'memory://', task_acks_lat: true } as AppSettingsInput), (e: unknown) => e instanceof SettingError && e.suggestion === 'task_acks_late');
  });

  it('edit distance counts swaps as one edit', () => {
    assert.equal(editDistance('brokerurl', 'brokerurl'), 0);
    assert.equal(editDistance('borkerurl', 'brokerurl'), 1);
    assert.equal(editDistance('abc', ''), 3);
    assert.equal(suggestSetting('zzzzzz', SETTING_NAMES), undefined);
  });
});

describe("Celery's spellings", () => {
  it('snake_case names are accepted and mapped', () => {
    const s = resolveAny({
      broker_url: 'redis://h/0', result_backend: 'redis://h/1', task_serializer: 'msgpack', accept_content: ['msgpack'],
      broker_transport_options: { visibility_timeout: 7, global_keyprefix: 'p:' }, task_acks_late: true,
      broker_connection_max_retries: 5, security_digest: 'sha512', send_rate_limit: '10/s', broker_use_ssl: { ssl_cert_reqs: 'required' },
      unsafe_allow_content: true,
    });
    assert.equal(s.brokerUrl, 'redis://h/0');
    assert.equal(s.resultBackend, 'redis://h/1');
    assert.equal(s.taskSerializer, 'msgpack');
    assert.deepEqual(s.acceptContent, ['msgpack']);
    assert.deepEqual(s.brokerTransportOptions, { visibilityTimeout: 7, globalKeyprefix: 'p:' });
    assert.equal(s.taskAcksLate, true);
    assert.deepEqual(s.connection, { brokerConnectionMaxRetries: 5 });
    assert.deepEqual(s.security, { securityDigest: 'sha512' });
    assert.deepEqual(s.limits, { sendRateLimit: '10/s' });
    assert.deepEqual(s.tls, { brokerUseSsl: { ssl_cert_reqs: 'required' } });
    assert.deepEqual(s.unsafe, { unsafeAllowContent: true });
  });

  it('old upper-case names (CELERY_*, BROKER_*) are accepted and mapped, typed too', () => {
    const input: AppSettingsInput = {
      BROKER_URL: 'redis://h/0', CELERY_RESULT_BACKEND: 'redis://h/1', CELERY_TASK_SERIALIZER: 'json', CELERY_ACCEPT_CONTENT: ['json'],
      CELERY_TASK_RESULT_EXPIRES: 60, CELERY_ROUTES: { 'tasks.add': { queue: 'math' } }, CELERY_DEFAULT_QUEUE: 'jobs', CELERY_ACKS_LATE: true,
      CELERYD_TASK_TIME_LIMIT: 30, BROKER_TRANSPORT_OPTIONS: { visibilityTimeout: 9 }, BROKER_HEARTBEAT: 0, CELERY_SECURITY_DIGEST: 'sha384',
    };
    const s = resolveSettings(input);
    assert.equal(s.brokerUrl, 'redis://h/0');
    assert.equal(s.resultBackend, 'redis://h/1');
    assert.equal(s.resultExpires, 60);
    assert.deepEqual(s.taskRoutes, { 'tasks.add': { queue: 'math' } });
    assert.equal(s.taskDefaultQueue, 'jobs');
    assert.equal(s.taskAcksLate, true);
    assert.equal(s.taskTimeLimit, 30);
    assert.equal(s.brokerTransportOptions.visibilityTimeout, 9);
    assert.equal(s.connection.brokerHeartbeat, 0);
    assert.equal(s.security.securityDigest, 'sha384');
  });

  it("Celery route dicts with exchange and routing_key load; an unknown route key is refused", () => {
    const s = resolveAny({ task_routes: { 'tasks.add': { queue: 'math', exchange: 'math', routing_key: 'math.add' } } });
    assert.equal(s.taskRoutes['tasks.add']?.queue, 'math');
    assert.throws(() => resolveAny({ task_routes: { 'tasks.add': { queue: 'math', qeue: 'x' } } }), /qeue/);
  });

  it('two spellings of one setting with different values are refused', () => {
    assert.throws(() => resolveAny({ brokerUrl: 'redis://a/0', broker_url: 'redis://b/0' }), /conflicts with another spelling/);
    assert.equal(resolveAny({ brokerUrl: 'redis://a/0', BROKER_URL: 'redis://a/0' }).brokerUrl, 'redis://a/0');
  });

  it('null (Celery\'s None) means not set, except where it means unlimited', () => {
    const s = resolveAny({ taskSerializer: null, security_key: null, taskMaxRetries: null, broker_connection_max_retries: null });
    assert.equal(s.taskSerializer, 'json');
    assert.deepEqual(s.security, {});
    assert.equal(s.taskMaxRetries, null);
    assert.deepEqual(s.connection, { brokerConnectionMaxRetries: null });
  });
});

describe('wrong types', () => {
  it('name the setting as written and the type it needs', () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ task_acks_late: 'yes' }, 'task_acks_late', /setting task_acks_late must be true or false, not a string/],
      [{ resultExpires: '1d' }, 'resultExpires', /must be a number of seconds ≥ 0/],
      [{ taskSerializer: 'pickle' }, 'taskSerializer', /must be json, msgpack or auth .*not "pickle"/],
      [{ accept_content: 'json' }, 'accept_content', /must be a list of content type names/],
      [{ taskDefaultQueueType: 'mirrored' }, 'taskDefaultQueueType', /'classic' or 'quorum', not "mirrored"/],
      [{ securityReplayStore: 'disk' }, 'securityReplayStore', /auto, redis, sqlite, postgres, local or memory/],
      [{ brokerTransportOptions: { visibilityTimeout: '60' } }, 'brokerTransportOptions.visibilityTimeout', /must be a number of seconds/],
      [{ sendRateLimit: { rate: '1/s', burts: 3 } }, 'sendRateLimit', /must be a rate such as '100\/s'/],
      [{ broker_use_ssl: 'yes' }, 'broker_use_ssl', /true, false or an object of TLS settings/],
      [{ unsafeAllowPlaintext: 1 }, 'unsafeAllowPlaintext', /must be true or false, not 1/],
      [{ taskRoutes: { 'tasks.add': { queue: 3 } } }, 'taskRoutes', /task name → \{ queue\?, priority\?, exchange\?, routing_key\? \}/],
    ];
    for (const [input, setting, message] of cases) {
      const err = refused(input, 'ERR_SETTING_TYPE');
      assert.equal(err.setting, setting);
      assert.match(err.message, message);
    }
  });

  it('never repeat a string value that could be a secret', () => {
    const err = refused({ securityKeyPassword: 12, securityKey: ['Sup3r-s3cret-value'] }, 'ERR_SETTING_TYPE');
    assert.ok(!err.message.includes('Sup3r'), err.message);
    const e2 = refused({ task_acks_late: 'Sup3r-s3cret-value' }, 'ERR_SETTING_TYPE');
    assert.ok(!e2.message.includes('Sup3r'), e2.message);
  });
});

describe('the schema and AppSettings', () => {
  it('name the same settings (the interface documents, the schema checks)', () => {
    const source = readFileSync(join(ROOT, 'src/config/options.ts'), 'utf8');
    assert.deepEqual(interfaceFields(source, 'AppSettings').map((f) => f.name).sort(), [...SETTING_NAMES].sort());
  });

  it('resolved settings carry no untyped bag', () => {
    assert.ok(!('extra' in resolveSettings({})));
  });
});

describe('config/ layering', () => {
  it('imports nothing that does I/O beyond env and secret files (no observability, transports, client, worker, security)', () => {
    const dir = join(ROOT, 'src/config');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/^(?:import|export)[^;]*?from '([^']+)'/gm)) {
        const spec = m[1]!;
        assert.ok(!/^\.\.\/(observability|transport|client|worker|security|cli|audit|runtime)\//.test(spec), `${file} imports ${spec}`);
        assert.ok(!/^(pino|ioredis|amqplib|better-sqlite3|node:https?$|node:child_process$)/.test(spec), `${file} imports ${spec}`);
      }
    }
  });
});

describe('hostile keys', () => {
  it('prototype names are unknown settings, and never reach a prototype', () => {
    for (const key of ['toString', 'constructor', 'hasOwnProperty']) refused({ [key]: 1 }, 'ERR_UNKNOWN_SETTING');
    refused(JSON.parse('{"__proto__": {"taskAcksLate": true}}') as Record<string, unknown>, 'ERR_UNKNOWN_SETTING');
    const t = refused(JSON.parse('{"brokerTransportOptions": {"__proto__": {"visibilityTimeout": 1}}}') as Record<string, unknown>, 'ERR_UNKNOWN_SETTING');
    assert.equal(t.setting, 'brokerTransportOptions.__proto__');
    assert.equal(({} as Record<string, unknown>).taskAcksLate, undefined);
  });
});
