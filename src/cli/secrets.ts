/**
 * `celeriac secrets generate <kind>`: strong secrets, ACL users, key-ring
 * lines and signing certificates (CEL-011). Secrets go to stdout (or to
 * files with `--format file`); messages go to stderr and never contain a
 * secret.
 */
import { parseArgs } from 'node:util';
import { CeleriacError } from '../errors.ts';
import { formatEnv, formatPlain, generateSecret, SECRET_KINDS, writeSecretFiles, type GenerateOptions, type RedisAclRole, type SecretKind } from '../secrets/generate.ts';

/** Streams the command writes to. */
export interface SecretsCommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = `Usage: celeriac secrets generate <kind> [options]

Kinds:
  password        a random password (32+ URL-safe characters)
  redis-acl       Redis ACL users for Celery/Celeriac: a worker user and a
                  producer user (clients), each with a password, an ACL SETUSER
                  command, users.acl lines and broker/backend URLs. Only the
                  worker user may touch the replay store (celeriac:replay:*)
  rabbitmq-user   a RabbitMQ user with permissions on Celery's entities in one
                  vhost: password, rabbitmqctl commands, broker URL
  postgres-roles  PostgreSQL worker and producer roles (SCRAM): passwords, the
                  SQL for the roles and schemas, pg_hba.conf lines, URLs. Only
                  the worker role may touch the replay nonces (celeriac_replay)
  aes-key         a result encryption key ring line (AES-256-GCM)
  ed25519         an Ed25519 signing key: signing and verifying ring lines
  hmac            an HMAC-SHA256 shared secret ring line
  rsa-cert        an RSA key and self-signed certificate for Celery's auth serializer

Output:
  --format plain|env|file   plain text (default), KEY=value lines, or files
  --out DIR                 directory for --format file (created 0700); secret
                            files are written 0600, certificates 0644
  --force                   overwrite existing files

Kind options:
  --length N      password length, at least 32 (password, redis-acl, rabbitmq-user, postgres-roles)
  --user NAME     user name (redis-acl, rabbitmq-user; default celeriac-worker;
                  postgres-roles: default celeriac_worker)
  --producer-user NAME  producer user name (redis-acl; default celeriac-client;
                  postgres-roles: default celeriac_client)
  --database NAME database (postgres-roles; default celeriac)
  --role ROLE     worker, producer or both (redis-acl; default both; --format
                  env needs one: it prints the variables of one process)
  --vhost NAME    virtual host (rabbitmq-user; default celeriac)
  --host HOST     host in the example broker URL (redis-acl, rabbitmq-user, postgres-roles)
  --queues A,B    task queues to grant (redis-acl, rabbitmq-user; default celery)
  --db N          Redis database (redis-acl; default 0)
  --any-key       allow all keys/channels, commands stay restricted (redis-acl)
  --kid ID        key id (aes-key, ed25519, hmac; default date-random)
  --bits N        RSA key size (rsa-cert; default 3072, at least 2048)
  --days N        certificate validity (rsa-cert; default 365)
  --cn NAME       certificate common name (rsa-cert; default celeriac-signer)
  --org NAME      certificate organization (rsa-cert; default Celeriac)

  -h, --help      show this help
`;

const APPLIES: Record<string, readonly SecretKind[]> = {
  length: ['password', 'redis-acl', 'rabbitmq-user', 'postgres-roles'],
  user: ['redis-acl', 'rabbitmq-user', 'postgres-roles'],
  'producer-user': ['redis-acl', 'postgres-roles'],
  database: ['postgres-roles'],
  role: ['redis-acl'],
  vhost: ['rabbitmq-user'],
  host: ['redis-acl', 'rabbitmq-user', 'postgres-roles'],
  queues: ['redis-acl', 'rabbitmq-user'],
  db: ['redis-acl'],
  'any-key': ['redis-acl'],
  kid: ['aes-key', 'ed25519', 'hmac'],
  bits: ['rsa-cert'],
  days: ['rsa-cert'],
  cn: ['rsa-cert'],
  org: ['rsa-cert'],
};

class UsageError extends Error {}

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number`);
  return Number(v);
}

function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

/** Run `celeriac secrets …` with `argv` after the word `secrets`. Returns the exit code: 0 ok, 1 failure, 2 usage error. */
export async function runSecretsCommand(argv: string[], io: SecretsCommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        format: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        length: { type: 'string' }, user: { type: 'string' }, 'producer-user': { type: 'string' }, role: { type: 'string' }, vhost: { type: 'string' }, host: { type: 'string' },
        queues: { type: 'string' }, db: { type: 'string' }, 'any-key': { type: 'boolean' }, kid: { type: 'string' },
        bits: { type: 'string' }, days: { type: 'string' }, cn: { type: 'string' }, org: { type: 'string' }, database: { type: 'string' },
      },
    });
  } catch (err) {
    await write(io.stderr, `celeriac secrets: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    await write(values.help ? io.stdout : io.stderr, USAGE);
    return values.help ? 0 : 2;
  }
  try {
    const [sub, kindArg, ...extra] = positionals;
    if (sub !== 'generate') throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}; use generate`);
    if (kindArg === undefined) throw new UsageError(`name a kind: ${SECRET_KINDS.join(', ')}`);
    if (!(SECRET_KINDS as readonly string[]).includes(kindArg)) throw new UsageError(`unknown kind ${JSON.stringify(kindArg)}; use one of ${SECRET_KINDS.join(', ')}`);
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const kind = kindArg as SecretKind;
    for (const [opt, kinds] of Object.entries(APPLIES)) {
      if ((values as Record<string, unknown>)[opt] !== undefined && !kinds.includes(kind)) throw new UsageError(`--${opt} does not apply to ${kind}`);
    }
    const format = values.format ?? 'plain';
    if (!['plain', 'env', 'file'].includes(format)) throw new UsageError('--format must be plain, env or file');
    if (format === 'file' && !values.out) throw new UsageError('--format file needs --out DIR');
    if (format !== 'file' && (values.out !== undefined || values.force)) throw new UsageError('--out and --force apply to --format file only');

    if (values.role !== undefined && !['worker', 'producer', 'both'].includes(values.role)) throw new UsageError('--role must be worker, producer or both');
    const opts: GenerateOptions = {
      length: int(values.length, 'length'), user: values.user, producerUser: values['producer-user'], role: values.role as RedisAclRole | undefined, vhost: values.vhost, host: values.host,
      queues: values.queues?.split(',').map((q) => q.trim()).filter(Boolean), db: int(values.db, 'db'), anyKey: values['any-key'],
      kid: values.kid, bits: int(values.bits, 'bits'), days: int(values.days, 'days'), commonName: values.cn, organization: values.org,
      database: values.database,
    };
    const secret = await generateSecret(kind, opts);
    if (format === 'env') {
      await write(io.stdout, formatEnv(secret));
    } else if (format === 'plain') {
      await write(io.stdout, formatPlain(secret));
    } else {
      const paths = writeSecretFiles(values.out!, secret, values.force ?? false);
      const lines = secret.items.map((it, i) => `wrote ${paths[i]} (${it.sensitive ? '0600' : '0644'}): ${it.label}`);
      await write(io.stdout, `${[...lines, ...secret.notes.map((n) => `note: ${n}`)].join('\n')}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      await write(io.stderr, `celeriac secrets: ${err.message}\nRun celeriac secrets --help for usage.\n`);
      return 2;
    }
    if (err instanceof CeleriacError) {
      await write(io.stderr, `celeriac secrets: ${err.message}\n`);
      return 1;
    }
    if (err instanceof RangeError || (err instanceof Error && err.name === 'KeyRingError')) {
      await write(io.stderr, `celeriac secrets: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
