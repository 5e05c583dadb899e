import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseResultKeyRing } from '../../../src/codec/encryption.ts';
import { parseSigningKeyRing } from '../../../src/codec/signing/keyring.ts';
import { parseConnectionUrl } from '../../../src/config/url.ts';
import { assessCredentials } from '../../../src/config/weak-credentials.ts';
import {
  defaultKid, formatEnv, formatPlain, generatePassword, generateSecret, REDIS_ACL_COMMANDS, redisAclPatterns, writeSecretFiles,
} from '../../../src/secrets/generate.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'celeriac-generate-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('generatePassword', () => {
  it('32 URL-safe characters by default, unique, strong by our own rule', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = generatePassword();
      assert.match(p, /^[A-Za-z0-9_-]{32}$/);
      assert.equal(encodeURIComponent(p), p);
      assert.equal(assessCredentials('u', p), undefined);
      seen.add(p);
    }
    assert.equal(seen.size, 200);
  });

  it('uses the whole alphabet', () => {
    const chars = new Set(Array.from({ length: 100 }, () => generatePassword(64)).join(''));
    assert.equal(chars.size, 64);
  });

  it('refuses lengths below 32', () => {
    assert.throws(() => generatePassword(31), /32/);
    assert.equal(generatePassword(48).length, 48);
  });
});

describe('generateSecret', () => {
  it('password', async () => {
    const s = await generateSecret('password');
    assert.equal(s.items.length, 1);
    assert.equal(s.items[0]!.sensitive, true);
    assert.equal(formatPlain(s), `${s.items[0]!.value}\n`);
  });

  it('redis-acl: worker and producer users; the producer has no replay-store keys', async () => {
    const s = await generateSecret('redis-acl', { user: 'w1', producerUser: 'c1' });
    const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
    assert.match(byFile['redis-acl-setuser.txt']!, /^ACL SETUSER w1 .* ~celeriac:replay:\* /);
    assert.match(byFile['producer-redis-acl-setuser.txt']!, /^ACL SETUSER c1 /);
    assert.doesNotMatch(byFile['producer-redis-acl-setuser.txt']!, /celeriac:replay|~celeriac:\*|~\* /);
    assert.equal(byFile['users.acl']!.split('\n').length, 2);
    assert.notEqual(byFile['redis-password'], byFile['producer-redis-password']);
    await assert.rejects(generateSecret('redis-acl', { user: 'x', producerUser: 'x' }), /different names/);
  });

  it('redis-acl: user, password, SETUSER, users.acl with SHA-256, URL', async () => {
    const s = await generateSecret('redis-acl', { user: 'w1', host: 'redis.internal', queues: ['celery', 'math'], role: 'worker' });
    const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
    const pw = byFile['redis-password']!;
    const setuser = byFile['redis-acl-setuser.txt']!;
    assert.match(setuser, new RegExp(`^ACL SETUSER w1 reset on >${pw} `));
    assert.match(setuser, / -@all /);
    for (const c of ['+lpush', '+brpop', '+publish', '+psubscribe', '+setex', '+evalsha']) assert.ok(setuser.includes(` ${c}`), c);
    for (const c of ['+flushall', '+flushdb', '+config', '+keys', '+@all', '+@admin', '+@dangerous', '+acl', '+debug']) assert.ok(!setuser.split(' ').includes(c), c);
    assert.ok(setuser.includes(' ~math '));
    assert.ok(setuser.includes(' ~math??[0-9] '));
    const aclLine = byFile['users.acl']!;
    assert.ok(aclLine.startsWith(`user w1 on #${createHash('sha256').update(pw).digest('hex')} `));
    assert.ok(!aclLine.includes(pw), 'the ACL file stores a hash, not the password');
    const url = parseConnectionUrl(byFile['broker-url']!);
    assert.equal(url.tls, true);
    assert.equal(url.username, 'w1');
    assert.equal(url.password, pw);
    assert.equal(url.host, 'redis.internal');
  });

  it('redis-acl patterns and --any-key', () => {
    const { keys, channels } = redisAclPatterns(['celery'], 2);
    assert.ok(keys.includes('~celery-task-meta-*'));
    assert.ok(keys.includes('~_kombu.binding.*'));
    assert.ok(channels.includes('&/2.celeryev/*'));
    assert.ok(channels.includes('&/2.celery.pidbox'));
    assert.ok(channels.includes('&/2.celeryev/worker.*'), "a Python worker's gossip PSUBSCRIBE pattern");
    assert.ok(keys.includes('~celeriac:replay:*'), 'workers keep the replay store');
    assert.ok(!redisAclPatterns(['celery'], 2, false, 'producer').keys.some((k) => k.startsWith('~celeriac:replay') || k === '~celeriac:*' || k === '~*'), 'producers cannot touch the replay store');
    assert.deepEqual(redisAclPatterns(['celery'], 0, true), { keys: ['~*'], channels: ['&*'] });
    // --any-key for producers: every key but celeriac:replay:* (checked with Redis' own glob rules in the ACL test).
    const any = redisAclPatterns(['celery'], 0, true, 'producer').keys;
    assert.ok(any.includes('~[^c]*') && any.includes('~celeriac:replay[^:]*') && any.includes('~celeriac:replay'));
    assert.ok(Object.values(REDIS_ACL_COMMANDS).flat().every((c) => /^[a-z]+(\|[a-z]+)?$/.test(c)));
  });

  it('rabbitmq-user: commands, permissions on Celery entities, no tags', async () => {
    const s = await generateSecret('rabbitmq-user', { user: 'w2', vhost: 'jobs', queues: ['celery', 'high.prio'] });
    const byFile = Object.fromEntries(s.items.map((i) => [i.fileName, i.value]));
    const cmds = byFile['rabbitmq-setup.sh']!.split('\n');
    assert.equal(cmds[0], "rabbitmqctl add_vhost 'jobs'");
    assert.equal(cmds[1], `rabbitmqctl add_user 'w2' '${byFile['amqp-password']}'`);
    assert.match(cmds[2]!, /^rabbitmqctl set_permissions -p 'jobs' 'w2' '\^\(celery\|high\\\.prio\|celery\\\.dlq\|high\\\.prio\\\.dlq\|celeryev/);
    assert.equal(cmds[3], "rabbitmqctl set_user_tags 'w2'");
    const [configure, write, read] = [...cmds[2]!.matchAll(/'([^']*)'/g)].slice(2).map((m) => new RegExp(m[1]!));
    for (const name of ['celery', 'high.prio', 'celery.dlq', 'celeryev', 'celery.pidbox', 'w@h.celery.pidbox', 'reply.celery.pidbox', 'abc.reply.celery.pidbox', 'celeryev.1234']) {
      assert.ok(configure!.test(name) && read!.test(name) && write!.test(name), name);
    }
    assert.ok(write!.test('amq.default'));
    assert.ok(!configure!.test('other-queue'));
    assert.ok(!configure!.test('highXprio'), 'dots are escaped');
    const url = parseConnectionUrl(byFile['broker-url']!);
    assert.equal(url.vhost, 'jobs');
    assert.equal(url.tls, true);
  });

  it('aes-key, ed25519, hmac lines parse with the key-ring parsers', async () => {
    const aes = await generateSecret('aes-key', { kid: 'k-1' });
    assert.match(aes.items[0]!.value, /^k-1:aes-256-gcm:/);
    assert.doesNotThrow(() => parseResultKeyRing(aes.items[0]!.value));
    const ed = await generateSecret('ed25519', { kid: 'ed-1' });
    assert.equal(ed.items.length, 2);
    assert.equal(ed.items[0]!.sensitive, true);
    assert.equal(ed.items[1]!.sensitive, false);
    assert.doesNotThrow(() => parseSigningKeyRing(ed.items[0]!.value));
    assert.doesNotThrow(() => parseSigningKeyRing(ed.items[1]!.value));
    const h = await generateSecret('hmac');
    assert.match(h.items[0]!.value, /^\d{4}-\d\d-\d\d-[0-9a-f]{6}:hmac-sha256:/);
    assert.doesNotThrow(() => parseSigningKeyRing(h.items[0]!.value));
    assert.match(defaultKid(new Date(Date.UTC(2025, 0, 31))), /^2025-01-31-[0-9a-f]{6}$/);
  });

  it('rsa-cert: RSA key and matching self-signed certificate', async () => {
    const s = await generateSecret('rsa-cert', { bits: 2048, days: 30, commonName: 'signer-1', organization: 'Acme' });
    const [key, cert] = s.items;
    assert.match(key!.value, /^-----BEGIN PRIVATE KEY-----/);
    const x = new X509Certificate(cert!.value);
    assert.equal(x.subject, 'O=Acme\nCN=signer-1');
    assert.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(key!.value)));
    const days = (new Date(x.validTo).getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days < 31, String(days));
    await assert.rejects(generateSecret('rsa-cert', { bits: 1024 }), /2048/);
  });

  it('refuses odd names', async () => {
    await assert.rejects(generateSecret('redis-acl', { user: 'a b' }), /not allowed/);
    await assert.rejects(generateSecret('rabbitmq-user', { vhost: "x'; rm -rf /" }), /not allowed/);
  });
});

describe('formats', () => {
  it('env: KEY=value, shell-quoted; items without a name as comments', async () => {
    const s = await generateSecret('redis-acl');
    assert.throws(() => formatEnv(s), /set CELERIAC_BROKER_URL twice/);
    const out = formatEnv(await generateSecret('redis-acl', { role: 'worker' }));
    assert.match(out, /^# celeriac-worker$/m);
    assert.match(out, /^CELERIAC_BROKER_URL='?rediss:\/\/celeriac-worker:[A-Za-z0-9_-]{32}@/m);
    assert.match(out, /^CELERY_RESULT_BACKEND=/m);
    assert.match(out, /^# ACL SETUSER /m);
    const pem = await generateSecret('rsa-cert', { bits: 2048 });
    assert.match(formatEnv(pem), /^CELERIAC_SECURITY_KEY='-----BEGIN PRIVATE KEY-----\n/m);
  });

  it('plain: labels and notes for multi-item secrets', async () => {
    const out = formatPlain(await generateSecret('rabbitmq-user'));
    assert.match(out, /^# RabbitMQ password$/m);
    assert.match(out, /^# The user gets no tags/m);
  });
});

describe('writeSecretFiles', () => {
  it('writes one file per item: secrets 0600, public items 0644', async () => {
    const out = join(dir, 'ed');
    const s = await generateSecret('ed25519', { kid: 'f-1' });
    const paths = writeSecretFiles(out, s);
    assert.deepEqual(paths, [join(out, 'signing-keys'), join(out, 'verify-keys')]);
    assert.equal(statSync(paths[0]!).mode & 0o777, 0o600);
    assert.equal(statSync(paths[1]!).mode & 0o777, 0o644);
    assert.equal(statSync(out).mode & 0o777, 0o700);
    assert.equal(readFileSync(paths[0]!, 'utf8'), `${s.items[0]!.value}\n`);
  });

  it('refuses to overwrite, before writing anything; --force replaces and fixes the mode', async () => {
    const out = join(dir, 'pw');
    const first = await generateSecret('redis-acl');
    writeSecretFiles(out, first);
    const second = await generateSecret('redis-acl');
    assert.throws(() => writeSecretFiles(out, second), /refusing to overwrite/);
    const pwOf = (x: typeof first): string => x.items.find((i) => i.fileName === 'redis-password')!.value;
    assert.equal(readFileSync(join(out, 'redis-password'), 'utf8').trim(), pwOf(first));
    writeFileSync(join(out, 'redis-password'), 'x', { mode: 0o666 });
    writeSecretFiles(out, second, true);
    assert.equal(readFileSync(join(out, 'redis-password'), 'utf8').trim(), pwOf(second));
    assert.equal(statSync(join(out, 'redis-password')).mode & 0o777, 0o600);
  });

  it('never writes through a symbolic link, even with force', async () => {
    const out = join(dir, 'link');
    const target = join(dir, 'elsewhere.txt');
    writeFileSync(target, 'keep');
    writeSecretFiles(out, await generateSecret('password'));
    rmSync(join(out, 'password'));
    symlinkSync(target, join(out, 'password'));
    assert.throws(() => writeSecretFiles(out, { kind: 'password', items: [{ label: 'p', envName: undefined, fileName: 'password', value: 'v', sensitive: true }], notes: [] }, true), /symbolic link/);
    assert.equal(readFileSync(target, 'utf8'), 'keep');
  });
});
