import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { isLoopbackHost, isNetworkUrl, parseConnectionUrl } from '../../../src/config/url.ts';

/** Assert that parsing fails with a ConfigError whose message never contains `secret`. */
function assertRefused(url: string, secret: string, match?: RegExp): void {
  assert.throws(
    () => parseConnectionUrl(url),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.ok(!err.message.includes(secret), `message leaks the password: ${err.message}`);
      if (match) assert.match(err.message, match);
      return true;
    },
  );
}

describe('parseConnectionUrl: errors never quote pieces of an unencoded password', () => {
  it('what looks like the database, host or a parameter may be part of the password', () => {
    assertRefused('rediss://:ab@cd/efGH7%zz@127.0.0.1:6379/0', 'efGH7', /Redis database is not a number/);
    assertRefused('rediss://:ab@c!d/0@127.0.0.1:6379/0', 'c!d', /host is not a valid host name/);
    // Without credentials the piece is quoted, which helps.
    assert.throws(() => parseConnectionUrl('redis://h:6379/zero'), /Redis database "zero" is not a number/);
  });
});

describe('parseConnectionUrl: redis', () => {
  it('parses user, password, host, port and db', () => {
    const u = parseConnectionUrl('redis://worker:s3cret-Pass@Redis.Example.com:6380/2');
    assert.equal(u.kind, 'redis');
    assert.equal(u.scheme, 'redis');
    assert.equal(u.tls, false);
    assert.equal(u.host, 'redis.example.com');
    assert.equal(u.port, 6380);
    assert.equal(u.username, 'worker');
    assert.equal(u.password, 's3cret-Pass');
    assert.equal(u.db, 2);
    assert.equal(u.vhost, undefined);
    assert.ok(!u.redacted.includes('s3cret-Pass'));
  });

  it('fills defaults: port 6379, db 0, host localhost', () => {
    const u = parseConnectionUrl('redis://');
    assert.equal(u.host, 'localhost');
    assert.equal(u.port, 6379);
    assert.equal(u.db, 0);
    assert.equal(u.username, undefined);
    assert.equal(u.password, undefined);
  });

  it('password-only form and empty password', () => {
    const u = parseConnectionUrl('redis://:pw-only@h/0');
    assert.equal(u.username, undefined);
    assert.equal(u.password, 'pw-only');
    const e = parseConnectionUrl('redis://:@h/0');
    assert.equal(e.password, undefined);
  });

  it('rediss is TLS and keeps Celery TLS parameters', () => {
    const u = parseConnectionUrl('rediss://:p@h:6379/1?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca+1.pem');
    assert.equal(u.tls, true);
    assert.equal(u.params.ssl_cert_reqs, 'required');
    assert.equal(u.params.ssl_ca_certs, '/etc/ca+1.pem', '+ is kept, not turned into a space');
  });

  it('percent-decodes user and password', () => {
    const u = parseConnectionUrl('redis://us%40er:p%40ss%2Fw%3Ard%25@h:1/0');
    assert.equal(u.username, 'us@er');
    assert.equal(u.password, 'p@ss/w:rd%');
  });

  it('tolerates an unencoded @ in the password (last @ ends the user info)', () => {
    const u = parseConnectionUrl('redis://:p@ss@h:6379/0');
    assert.equal(u.password, 'p@ss');
    assert.equal(u.host, 'h');
  });

  it('does not mistake an @ in a query value for user info', () => {
    const u = parseConnectionUrl('redis://h:6379/0?client_name=a@b');
    assert.equal(u.host, 'h');
    assert.equal(u.password, undefined);
    assert.equal(u.params.client_name, 'a@b');
  });

  it('accepts IPv6 hosts in brackets', () => {
    const u = parseConnectionUrl('redis://:pw@[::1]:7000/3');
    assert.equal(u.host, '::1');
    assert.equal(u.port, 7000);
    assert.equal(u.db, 3);
  });

  it('?db= when the path has none', () => {
    assert.equal(parseConnectionUrl('redis://h?db=5').db, 5);
  });

  it('refuses malformed URLs without echoing the password', () => {
    assertRefused('redis://:pa/ss-word@h:6379/0', 'pa/ss-word', /percent-encode/);
    assertRefused('redis://user:hunter2-%zz@h/0', 'hunter2', /percent-encoding/);
    assertRefused('redis://:p#ssword99@h:6379/0', 'ssword99');
    assertRefused('redis://:pw-secret-1@h:99999/0', 'pw-secret-1', /port/);
    assertRefused('redis://:pw-secret-2@h/notanumber', 'pw-secret-2', /database/);
    assertRefused('redis://user:pw?secret3@h/0', 'secret3');
    assertRefused('redis://:pw-secret-4@h:1:2/0', 'pw-secret-4');
  });

  it('refuses unknown schemes and non-URLs', () => {
    assertRefused('pickle://x', 'zzz', /not supported/);
    assertRefused('just-a-host:6379', 'zzz', /scheme/);
    assert.throws(() => parseConnectionUrl(''), ConfigError);
  });
});

describe('parseConnectionUrl: amqp', () => {
  it("Celery's // means vhost /", () => {
    const u = parseConnectionUrl('amqp://guest:guest@localhost:5672//');
    assert.equal(u.kind, 'amqp');
    assert.equal(u.vhost, '/');
    assert.equal(u.port, 5672);
    assert.equal(u.username, 'guest');
  });

  it('%2F, empty path and no path mean /', () => {
    assert.equal(parseConnectionUrl('amqp://h/%2F').vhost, '/');
    assert.equal(parseConnectionUrl('amqp://h/').vhost, '/');
    assert.equal(parseConnectionUrl('amqp://h').vhost, '/');
  });

  it('named vhost, percent-decoded', () => {
    assert.equal(parseConnectionUrl('amqp://u:p@h/celeriac').vhost, 'celeriac');
    assert.equal(parseConnectionUrl('amqp://u:p@h/my%2Fvhost').vhost, 'my/vhost');
  });

  it('amqps is TLS on 5671; pyamqp is amqp', () => {
    const s = parseConnectionUrl('amqps://u:p@h/v');
    assert.equal(s.tls, true);
    assert.equal(s.port, 5671);
    const p = parseConnectionUrl('pyamqp://u:p@h//');
    assert.equal(p.kind, 'amqp');
    assert.equal(p.scheme, 'pyamqp');
    assert.equal(p.tls, false);
  });

  it('?ssl=true switches TLS on', () => {
    assert.equal(parseConnectionUrl('amqp://u:p@h//?ssl=true').tls, true);
  });
});

describe('parseConnectionUrl: postgres, sqlite, memory', () => {
  it('postgres with sslmode', () => {
    const u = parseConnectionUrl('postgresql://app:pw@db.internal/results?sslmode=verify-full&sslrootcert=/ca.pem');
    assert.equal(u.kind, 'postgres');
    assert.equal(u.port, 5432);
    assert.equal(u.database, 'results');
    assert.equal(u.tls, true);
    assert.equal(parseConnectionUrl('postgres://h/db?sslmode=require').tls, true);
    assert.equal(parseConnectionUrl('postgres://h/db?sslmode=prefer').tls, false);
    assert.equal(parseConnectionUrl('postgres://h/db').tls, false);
    assertRefused('postgres://u:pgsecret99@h/db?sslmode=bogus', 'pgsecret99', /sslmode/);
  });

  it("SQLAlchemy's db+postgresql+psycopg2://", () => {
    const u = parseConnectionUrl('db+postgresql+psycopg2://u:p@h:5433/db');
    assert.equal(u.kind, 'postgres');
    assert.equal(u.scheme, 'postgresql');
    assert.equal(u.port, 5433);
  });

  it('postgres Unix socket directory', () => {
    const u = parseConnectionUrl('postgres:///db?host=/run/postgresql');
    assert.equal(u.host, '/run/postgresql');
    assert.equal(isLoopbackHost(u.host), true);
  });

  it('sqlite paths: /// absolute, // relative', () => {
    assert.equal(parseConnectionUrl('sqlite:///var/lib/celeriac/db.sqlite').path, '/var/lib/celeriac/db.sqlite');
    assert.equal(parseConnectionUrl('sqlite://data/celeriac.db').path, 'data/celeriac.db');
    assert.equal(parseConnectionUrl('sqlite://./x.db').path, './x.db');
    assert.equal(parseConnectionUrl('sqlite:////abs.db').path, '/abs.db');
    assert.equal(parseConnectionUrl('sqlite://').path, undefined);
    const u = parseConnectionUrl('sqlite:///tmp/a%20b.db?mode=wal');
    assert.equal(u.path, '/tmp/a b.db');
    assert.equal(u.params.mode, 'wal');
    assert.equal(u.tls, false);
    assert.equal(isNetworkUrl(u), false);
  });

  it("SQLAlchemy's db+sqlite keeps SQLAlchemy's meaning", () => {
    assert.equal(parseConnectionUrl('db+sqlite:///results.db').path, 'results.db');
    assert.equal(parseConnectionUrl('db+sqlite:////abs/results.db').path, '/abs/results.db');
  });

  it('memory', () => {
    const u = parseConnectionUrl('memory://');
    assert.equal(u.kind, 'memory');
    assert.equal(u.path, undefined);
    assert.equal(parseConnectionUrl('memory://one').path, 'one');
  });
});

describe('isLoopbackHost', () => {
  for (const h of ['localhost', 'LOCALHOST', 'localhost.', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '/var/run/redis.sock']) {
    it(`${h} is loopback`, () => assert.equal(isLoopbackHost(h), true));
  }
  for (const h of ['10.0.0.1', '128.0.0.1', '::2', '::ffff:10.0.0.1', 'redis.example.com', 'localhost.example.com', 'mylocalhost', '0.0.0.0', '']) {
    it(`${JSON.stringify(h)} is not loopback`, () => assert.equal(isLoopbackHost(h), false));
  }
});
