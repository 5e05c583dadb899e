/**
 * The leak test (CEL-002): a random 32-character password — with characters
 * a URL must percent-encode — is the Redis password in every URL, given
 * every way Celeriac takes one: an environment variable, a `_FILE` secret
 * file, a `${file:…}` reference, and the `--broker` / `--result-backend`
 * flags. A full task round trip runs through `celeriac worker`, `celeriac
 * send` and `celeriac result`, with failures on purpose: a wrong password,
 * a task whose error message carries the URL (percent-encoded, and written
 * raw), a TLS failure, a refused policy, an unparsable URL, `--help`,
 * `inspect conf --with-defaults` against the worker. Then
 * every captured log line, error message, stdout and stderr — and every
 * record left in Redis — is searched for the password in raw and
 * percent-encoded form and for any 6-character piece of either: zero hits.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createApp } from '../../../src/client/app.ts';
import { RemoteTaskError } from '../../../src/errors.ts';
import { startCeleriacWorker, TS_TASKS, type CeleriacWorkerProcess } from '../../helpers/celeriac-worker.ts';
import type { TestPki } from '../../helpers/pki.ts';
import { hasRedisServer, type RedisServer } from '../../helpers/redis-server.ts';
import { requireService } from '../../helpers/services.ts';
import { awkwardPassword, memoryLogger, runCli, startTlsRedis, tempDir, testPki, tlsUrl, type CliRun } from './support.ts';

const ok = hasRedisServer();
/** Length of the pieces searched for. */
const WINDOW = 6;

/**
 * Every form of `secret` that must not appear, and every 6-character piece
 * of each (a parser error quoting "the database" of a URL with an unencoded
 * password once showed 7 characters of it).
 */
function needles(secret: string): string[] {
  const forms = new Set([
    secret,
    encodeURIComponent(secret),
    encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    encodeURI(secret),
    JSON.stringify(secret).slice(1, -1),
  ]);
  const out = new Set(forms);
  for (const f of forms) for (let i = 0; i + WINDOW <= f.length; i++) out.add(f.slice(i, i + WINDOW));
  return [...out];
}

/** Where in `haystacks` any needle occurs (label and offset only: the report itself must not print the secret). */
function leaks(haystacks: ReadonlyArray<readonly [string, string]>, secrets: readonly string[]): string[] {
  const found: string[] = [];
  const all = secrets.flatMap(needles);
  for (const [label, text] of haystacks) {
    for (const n of all) {
      const at = text.indexOf(n);
      if (at !== -1) {
        found.push(`${label} @${at}: …${text.slice(Math.max(0, at - 40), at).replace(/\s+/g, ' ')}[SECRET]`);
        break;
      }
    }
  }
  return found;
}

/** Every value in databases 0 and 1, as text. */
async function dumpRedis(admin: Redis): Promise<string> {
  const parts: string[] = [];
  for (const db of [0, 1]) {
    await admin.select(db);
    for (const key of await admin.keys('*')) {
      const type = await admin.type(key);
      const v = type === 'string' ? await admin.get(key)
        : type === 'list' ? await admin.lrange(key, 0, -1)
          : type === 'hash' ? await admin.hgetall(key)
            : type === 'set' ? await admin.smembers(key)
              : type === 'zset' ? await admin.zrange(key, '0', '-1')
                : type;
      parts.push(`${db}:${key} ${JSON.stringify(v)}`);
    }
  }
  await admin.select(0);
  return parts.join('\n');
}

describe('no secret leaks: a known password in every URL, every output searched', () => {
  const secret = awkwardPassword(32);
  // Differs from the secret in its last character only: any 6-character piece of it is a piece of the secret.
  const wrong = secret.slice(0, -1) + (secret.endsWith('Q') ? 'R' : 'Q');
  const tmp = tempDir('leak');
  let pki: TestPki;
  let redis: RedisServer | undefined;
  let worker: CeleriacWorkerProcess | undefined;
  const captured: Array<readonly [string, string]> = [];
  const files = { brokerUrl: '', backendUrl: '', password: '', wrongBrokerUrl: '' };
  let url = (_db: number, _pw?: string): string => '';
  let refUrl = (_db: number): string => '';

  const cli = async (label: string, args: string[], env: Record<string, string>, expectCode?: number): Promise<CliRun> => {
    const run = await runCli(args, { CELERIAC_BROKER_URL: '', CELERIAC_RESULT_BACKEND: '', CELERIAC_LOG_LEVEL: 'debug', ...env }, { timeoutMs: 30_000 });
    captured.push([`${label} stdout`, run.stdout], [`${label} stderr`, run.stderr]);
    assert.equal(run.timedOut, false, `${label} must not hang`);
    if (expectCode !== undefined) assert.equal(run.code, expectCode, `${label}: exit ${run.code}\n${run.stderr.slice(-2000)}`);
    return run;
  };

  before(async () => {
    if (!ok) return;
    pki = await testPki(tmp.dir);
    redis = await startTlsRedis(pki, { password: secret });
    const query = `ssl_cert_reqs=required&ssl_ca_certs=${encodeURIComponent(pki.ca)}`;
    url = (db, pw = secret) => tlsUrl(redis!, { password: pw }, db, query);
    refUrl = (db) => `rediss://:\${file:${files.password}}@127.0.0.1:${redis!.tlsPort}/${db}?${query}`;
    const secretFile = (name: string, text: string): string => {
      const p = join(tmp.dir, name);
      writeFileSync(p, `${text}\n`, { mode: 0o600 });
      return p;
    };
    files.brokerUrl = secretFile('broker-url', url(0));
    files.backendUrl = secretFile('backend-url', url(1));
    files.password = secretFile('redis-password', secret);
    files.wrongBrokerUrl = secretFile('wrong-broker-url', url(0, wrong));
    // The worker: broker from the --broker flag, results from a _FILE; debug logging.
    worker = await startCeleriacWorker({ env: { CELERIAC_RESULT_BACKEND_FILE: files.backendUrl, CELERIAC_LOG_LEVEL: 'debug' }, args: ['--broker', url(0), '-l', 'debug', '-c', '2'] });
  });
  after(async () => {
    await worker?.stop();
    await redis?.stop();
    tmp.cleanup();
  });

  it('round trip and failures through the CLI and in process, then zero hits anywhere', async (t) => {
    if (!requireService(t, ok, 'redis-server')) return;
    // 1. send --wait: broker from the environment, results through a ${file:} reference.
    const sent = await cli('send (env + ${file:})', ['send', 'tasks.add', '[2, 3]', '--wait', '--timeout', '20'], { CELERIAC_BROKER_URL: url(0), CELERIAC_RESULT_BACKEND: refUrl(1) }, 0);
    assert.match(sent.stdout, /"status":"SUCCESS","result":5/);

    // 2. A task whose error carries the URL, percent-encoded and written raw; sent with the flags.
    const message = `could not reach ${url(0)} (also tried redis://:${secret}@cache.internal:6379/0 and password=${secret})`;
    const failed = await cli('send --broker (task error with URL)', ['send', 'tasks.fail', JSON.stringify([message]), '--wait', '--timeout', '20', '--broker', url(0), '--result-backend', url(1)], {}, 1);
    assert.match(failed.stdout, /"status":"FAILURE"/);
    assert.match(failed.stderr, /--broker carries a password/);
    const failedId = (JSON.parse(failed.stdout.trim().split('\n').pop()!) as { task_id: string }).task_id;

    // 3. celeriac result, both URLs from _FILE secrets.
    const result = await cli('result (_FILE)', ['result', failedId], { CELERIAC_BROKER_URL_FILE: files.brokerUrl, CELERIAC_RESULT_BACKEND_FILE: files.backendUrl }, 1);
    assert.match(result.stdout, /"status":"FAILURE"/);
    assert.match(result.stdout, /could not reach rediss:\/\/:\*\*\*@127\.0\.0\.1/, 'the URL is still recognisable, its password masked');

    // 3b. A record stored by someone else (a Python worker stores exceptions as they are) that quotes
    // the bare password: `celeriac result` (URLs from _FILE only) masks it when printing.
    const foreignId = '5f0c2b8e-0000-4000-8000-00000000f00d';
    const admin = redis!.client(1);
    await admin.set(`celery-task-meta-${foreignId}`, JSON.stringify({ status: 'FAILURE', result: { exc_type: 'AuthenticationError', exc_message: [`AUTH ${secret} rejected`], exc_module: 'redis.exceptions' }, traceback: `Traceback (most recent call last):\nredis.exceptions.AuthenticationError: AUTH ${secret} rejected\n`, children: [], date_done: null, task_id: foreignId }));
    const foreign = await cli('result (_FILE, foreign record)', ['result', foreignId], { CELERIAC_BROKER_URL_FILE: files.brokerUrl, CELERIAC_RESULT_BACKEND_FILE: files.backendUrl }, 1);
    assert.match(foreign.stdout, /AUTH \*\*\* rejected/);
    await admin.del(`celery-task-meta-${foreignId}`);

    // 4. A wrong password: send (environment) and a worker (_FILE) fail with a clear message, quickly.
    const badSend = await cli('send (wrong password)', ['send', 'tasks.add', '[1, 1]'], { CELERIAC_BROKER_URL: url(0, wrong) }, 4);
    assert.match(badSend.stderr, /wrong username or password/);
    const badWorker = await cli('worker (wrong password, _FILE)', ['worker', '-A', TS_TASKS, '-c', '1'], { CELERIAC_BROKER_URL_FILE: files.wrongBrokerUrl, CELERIAC_RESULT_BACKEND_FILE: files.wrongBrokerUrl }, 4);
    assert.match(badWorker.stderr, /wrong username or password/);
    const badRef = await cli('send (${file:} missing)', ['send', 'tasks.add', '[1, 1]'], { CELERIAC_BROKER_URL: refUrl(0).replace(files.password, `${files.password}.missing`) }, 4);
    assert.match(badRef.stderr, /secret file .* cannot be read/);

    // 5. --help, with the secret in the environment.
    for (const cmd of [['--help'], ['worker', '--help'], ['send', '--help'], ['result', '--help'], ['secrets', '--help']]) {
      await cli(`${cmd.join(' ')}`, cmd, { CELERIAC_BROKER_URL: url(0), CELERIAC_RESULT_BACKEND_FILE: files.backendUrl });
    }

    // 5b. inspect conf with defaults: the worker's settings under Celery's names, the password masked in both URLs
    // (a URL registered whole as a secret, as one read from a _FILE, is masked whole).
    const conf = await cli('inspect conf --with-defaults', ['inspect', 'conf', '--with-defaults', '--json', '-t', '5'], { CELERIAC_BROKER_URL: url(0) }, 0);
    const confReply = Object.values(JSON.parse(conf.stdout) as Record<string, Record<string, unknown>>)[0]!;
    for (const k of ['broker_url', 'result_backend']) assert.match(String(confReply[k]), /^(\*\*\*|rediss:\/\/:\*\*\*@127\.0\.0\.1.*)$/, k);
    assert.equal(confReply.task_serializer, 'json', 'with defaults');

    // 6. In process: URLs given in code, a failing task whose error carries the URL, and failing connections.
    const log = memoryLogger('debug');
    const app = createApp({ brokerUrl: url(0), resultBackend: url(1), logger: log.logger, env: { NODE_ENV: 'test' } });
    const errors: unknown[] = [];
    try {
      assert.equal(await (await app.sendTask('tasks.add', [20, 22])).get({ timeoutMs: 20_000 }), 42);
      try {
        await (await app.sendTask('tasks.fail', [`in-process ${url(0)} ${secret}`])).get({ timeoutMs: 20_000 });
        assert.fail('the task must fail');
      } catch (err) {
        assert.ok(err instanceof RemoteTaskError, String(err));
        errors.push(err);
      }
    } finally {
      await app.close();
    }
    const attempts: Array<Record<string, unknown>> = [
      { brokerUrl: url(0, wrong) }, // wrong password
      { brokerUrl: tlsUrl(redis!, { password: secret }, 0, `ssl_ca_certs=${encodeURIComponent(pki.otherCa)}`) }, // TLS failure
      { brokerUrl: `redis://:${encodeURIComponent(secret)}@127.0.0.1:${redis!.port}/0`, env: { NODE_ENV: 'production' } }, // policy refusal
      { brokerUrl: `rediss://:${encodeURIComponent(secret)}@127.0.0.1:99999/0` }, // unparsable
      { brokerUrl: `rediss://:${secret}@127.0.0.1:${redis!.tlsPort}/0` }, // raw password with reserved characters
      { brokerUrl: url(0), brokerUseSsl: { ssl_cert_reqs: 'none', password: secret } }, // bad TLS settings
    ];
    for (const a of attempts) {
      const l = memoryLogger('debug');
      const bad = createApp({ env: { NODE_ENV: 'test' }, ...a, logger: l.logger });
      try {
        await bad.broker();
        assert.fail(`expected a failure for attempt ${attempts.indexOf(a)}`);
      } catch (err) {
        errors.push(err);
      } finally {
        await bad.close();
      }
      captured.push([`in-process attempt ${attempts.indexOf(a)} logs`, l.lines.join('')]);
    }
    captured.push(['in-process logs', log.lines.join('')]);
    for (const [i, e] of errors.entries()) {
      const err = e as Error & Partial<RemoteTaskError> & { hint?: string; findings?: unknown };
      captured.push([`error ${i}`, [err.name, err.message, err.stack, err.hint, JSON.stringify(err.excMessage), err.remoteTraceback, JSON.stringify(err.findings), String(err)].join('\n')]);
    }

    // 7. The worker's own output, through a graceful stop.
    await worker!.stop();
    captured.push(['worker output', worker!.output()]);
    // And what is left in Redis: results (exception messages, tracebacks), lists, the unacked hash.
    captured.push(['redis contents', await dumpRedis(redis!.client())]);

    const found = leaks(captured, [secret, wrong]);
    assert.deepEqual(found, [], `the password leaked:\n${found.join('\n')}`);
    // The search itself works: it finds the secret where it is.
    assert.equal(leaks([['control', `x ${encodeURIComponent(secret)} y`]], [secret]).length, 1);
    assert.equal(leaks([['control', `x ${secret.slice(5, 20)} y`]], [secret]).length, 1);
    // And the outputs were not empty: the redaction, not silence, made them clean.
    const text = captured.map(([, v]) => v).join('\n');
    assert.match(text, /\*\*\*/);
    assert.match(text, /task tasks\.fail\[[0-9a-f-]+\] raised ValueError/);
    assert.match(text, /"exc_type":"ValueError"/);
  });
});
