import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { createLogger } from '../../../src/observability/logging.ts';
import { classifyConnectionError, onSecurityEvent, recordSecurityEvent, resetSecurityEvents, securityCounters, type SecurityEvent } from '../../../src/observability/security-events.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { lines, logger };
}

describe('recordSecurityEvent', () => {
  beforeEach(() => resetSecurityEvents());

  it('counts per kind and snapshots', () => {
    recordSecurityEvent('auth_failure', { host: 'redis.internal' });
    recordSecurityEvent('auth_failure', { host: 'redis.internal' });
    recordSecurityEvent('forged_message', { taskId: 't1' });
    const snap = securityCounters();
    assert.deepEqual(snap, { auth_failure: 2, forged_message: 1 });
    snap.auth_failure = 99;
    assert.equal(securityCounters().auth_failure, 2, 'the snapshot is a copy');
    resetSecurityEvents();
    assert.deepEqual(securityCounters(), {});
  });

  it('logs structured fields with the host and reason, never the secret', () => {
    const { lines, logger } = capture();
    recordSecurityEvent('auth_failure', {
      host: 'redis.internal', reason: 'wrong username or password',
      url: 'redis://worker:Sup3r-secret-pw@redis.internal/0', password: 'Sup3r-secret-pw', token: 'abc-token-value',
    }, logger);
    assert.equal(lines.length, 1);
    const l = lines[0]!;
    assert.equal(l.securityEvent, 'auth_failure');
    assert.equal(l.host, 'redis.internal');
    assert.equal(l.reason, 'wrong username or password');
    assert.equal(l.level, 40);
    assert.equal(l.password, undefined);
    assert.equal(l.token, undefined);
    const text = JSON.stringify(l);
    assert.ok(!text.includes('Sup3r-secret-pw'), text);
    assert.ok(!text.includes('abc-token-value'), text);
  });

  it('forged messages log at error level, reloads at info', () => {
    const { lines, logger } = capture();
    recordSecurityEvent('forged_message', { taskId: 't', signer: 'k1', reason: 'signature does not verify' }, logger);
    recordSecurityEvent('secret_reloaded', { setting: 'brokerUrl' }, logger);
    assert.equal(lines[0]!.level, 50);
    assert.equal(lines[1]!.level, 30);
  });

  it('notifies listeners; a throwing listener does not break the caller', () => {
    const seen: SecurityEvent[] = [];
    onSecurityEvent(() => {
      throw new Error('boom');
    });
    const off = onSecurityEvent((e) => seen.push(e));
    recordSecurityEvent('tls_failure', { host: 'h', code: 'CERT_HAS_EXPIRED' });
    off();
    recordSecurityEvent('tls_failure', { host: 'h' });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.kind, 'tls_failure');
    assert.equal(seen[0]!.fields.code, 'CERT_HAS_EXPIRED');
    assert.match(seen[0]!.at, /^\d{4}-\d\d-\d\dT/);
  });
});

function err(message: string, props: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), props);
}

describe('classifyConnectionError', () => {
  const cases: [string, unknown, 'auth' | 'tls' | 'network', string | undefined][] = [
    ['Redis WRONGPASS', err('WRONGPASS invalid username-password pair or user is disabled.'), 'auth', 'WRONGPASS'],
    ['Redis NOAUTH', err('NOAUTH Authentication required.'), 'auth', 'NOAUTH'],
    ['Redis NOPERM', err("NOPERM this user has no permissions to run the 'flushall' command"), 'auth', 'NOPERM'],
    ['Redis old invalid password', err('ERR invalid password'), 'auth', 'WRONGPASS'],
    ['Redis AUTH without requirepass', err('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?'), 'auth', 'ERR_AUTH_NOT_CONFIGURED'],
    ['AMQP ACCESS_REFUSED', err('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."'), 'auth', 'ACCESS_REFUSED'],
    ['AMQP 403 code', err('refused', { code: 403 }), 'auth', 'ACCESS_REFUSED'],
    ['AMQP vhost NOT_ALLOWED', err('Connection closed: 530 (NOT-ALLOWED) with message "NOT_ALLOWED - access to vhost \'x\' refused for user \'u\'"'), 'auth', 'NOT_ALLOWED'],
    ['PostgreSQL', err('password authentication failed for user "app"', { code: '28P01' }), 'auth', '28P01'],
    ['untrusted leaf', err('unable to verify the first certificate', { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), 'tls', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['self-signed in chain', err('self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), 'tls', 'SELF_SIGNED_CERT_IN_CHAIN'],
    ['self-signed leaf', err('self-signed certificate', { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 'tls', 'DEPTH_ZERO_SELF_SIGNED_CERT'],
    ['expired', err('certificate has expired', { code: 'CERT_HAS_EXPIRED' }), 'tls', 'CERT_HAS_EXPIRED'],
    ['name mismatch', err("Hostname/IP does not match certificate's altnames", { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'tls', 'ERR_TLS_CERT_ALTNAME_INVALID'],
    ['plaintext port', err('write EPROTO 4057F1F5:error:0A00010B:SSL routines:ssl3_get_record:wrong version number', { code: 'EPROTO' }), 'tls', 'ERR_SSL_WRONG_VERSION_NUMBER'],
    ['other EPROTO', err('write EPROTO something', { code: 'EPROTO' }), 'tls', 'EPROTO'],
    ['closed during handshake', err('Client network socket disconnected before secure TLS connection was established', { code: 'ECONNRESET' }), 'tls', 'ECONNRESET'],
    ['client cert required', err('alert', { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' }), 'tls', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'],
    ['refused', err('connect ECONNREFUSED 127.0.0.1:6379', { code: 'ECONNREFUSED' }), 'network', 'ECONNREFUSED'],
    ['not found', err('getaddrinfo ENOTFOUND redis.internal', { code: 'ENOTFOUND' }), 'network', 'ENOTFOUND'],
    ['unknown', err('something odd'), 'network', undefined],
    ['not an error', 42, 'network', undefined],
  ];
  for (const [name, e, kind, code] of cases) {
    it(`${name} → ${kind}`, () => {
      const c = classifyConnectionError(e);
      assert.equal(c.kind, kind);
      assert.equal(c.code, code);
      assert.ok(c.reason.length > 0 && c.hint.length > 0);
    });
  }

  it('looks through cause chains and AggregateError', () => {
    const wrapped = new Error('Connection is closed.', { cause: err('WRONGPASS invalid username-password pair') });
    assert.equal(classifyConnectionError(wrapped).kind, 'auth');
    const agg = new AggregateError([err('a', { code: 'ECONNREFUSED' }), err('b', { code: 'CERT_HAS_EXPIRED' })], 'x');
    assert.equal(classifyConnectionError(agg).kind, 'tls');
  });

  it('never echoes server text (which might carry a secret)', () => {
    const c = classifyConnectionError(err('ERR AUTH my-secret-password called without any password configured'));
    assert.ok(!JSON.stringify(c).includes('my-secret-password'));
  });
});
