/**
 * Secret generation for `celeriac secrets generate` (CEL-011): every value
 * comes from the CSPRNG (`crypto.randomBytes` / key generation), nothing is
 * derived from time or user input.
 *
 * Output model: a generated secret is a list of items (a password, an ACL
 * line, a key, a certificate), each with an environment variable name, a
 * file name and whether it is sensitive. The CLI prints them as plain
 * text, as `KEY=value` lines, or writes one file per item (sensitive
 * files 0600, public ones such as certificates 0644, never overwriting
 * unless forced).
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, existsSync, fchmodSync, lstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { generateResultKey } from '../codec/encryption.ts';
import { generateSigningKey } from '../codec/signing/keyring.ts';
import { unsafeDirectory } from '../config/env.ts';
import { ConfigError } from '../errors.ts';
import { createSelfSignedCertificate, type DistinguishedName } from './x509.ts';
import { postgresRoles } from './postgres-roles.ts';

/** Kinds `celeriac secrets generate` knows. */
export const SECRET_KINDS = ['password', 'redis-acl', 'rabbitmq-user', 'postgres-roles', 'aes-key', 'ed25519', 'hmac', 'rsa-cert'] as const;
/** One of {@link SECRET_KINDS}. */
export type SecretKind = (typeof SECRET_KINDS)[number];

/** One generated value. */
export interface SecretItem {
  /** Human label, e.g. `Redis ACL (redis-cli)`. */
  label: string;
  /** Environment variable name for `--format env`; items without one are printed as `#` comments there. */
  envName: string | undefined;
  /** File name for `--format file`. */
  fileName: string;
  value: string;
  /** Secret material: file mode 0600 and never logged. Public items (certificates, public keys) get 0644. */
  sensitive: boolean;
}

/** Result of {@link generateSecret}. */
export interface GeneratedSecret {
  kind: SecretKind;
  items: SecretItem[];
  /** Short instructions printed with the plain format. */
  notes: string[];
}

/** Options of {@link generateSecret}; each applies to the kinds named. */
export interface GenerateOptions {
  /** password: length, ≥ 32 (default 32). */
  length?: number;
  /** redis-acl, rabbitmq-user: user name (default `celeriac-worker`; for redis-acl the worker user). */
  user?: string;
  /** redis-acl: the producer user's name (default `celeriac-client`). */
  producerUser?: string;
  /** redis-acl: which users to make: `worker`, `producer` or `both` (default). */
  role?: RedisAclRole;
  /** rabbitmq-user: virtual host (default `celeriac`). */
  vhost?: string;
  /** redis-acl, rabbitmq-user: host for the example URL (default `localhost`). */
  host?: string;
  /** redis-acl, rabbitmq-user: task queues besides Celery's own names (default `['celery']`). */
  queues?: readonly string[];
  /** redis-acl: database number used in fan-out channel names (default 0). */
  db?: number;
  /** redis-acl: allow every key and channel (`~* &*`) instead of Celery's layout; commands stay restricted. */
  anyKey?: boolean;
  /** aes-key, ed25519, hmac: key id (default `YYYY-MM-DD-<6 hex>`). */
  kid?: string;
  /** rsa-cert: RSA modulus bits, ≥ 2048 (default 3072). */
  bits?: number;
  /** rsa-cert: validity in days (default 365). */
  days?: number;
  /** rsa-cert: subject common name (default `celeriac-signer`). */
  commonName?: string;
  /** rsa-cert: subject organization (default `Celeriac`). */
  organization?: string;
  /** postgres-roles: database (default `celeriac`); `user`, `producerUser`, `host` and `length` apply too. */
  database?: string;
}

/** Users of {@link redisAclPatterns}: workers (which also send follow-up tasks) and producers (clients that only send and read results). */
export type RedisAclRole = 'worker' | 'producer' | 'both';

/** URL-safe alphabet: 64 symbols, so 6 random bits map to one symbol without bias. */
const URL_SAFE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** A random password of `length` (≥ 32) characters from the URL-safe alphabet `A-Z a-z 0-9 - _` (6 bits each). */
export function generatePassword(length = 32): string {
  if (!Number.isInteger(length) || length < 32 || length > 4096) throw new ConfigError('password length must be an integer from 32 to 4096');
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += URL_SAFE[bytes[i]! & 63];
  return out;
}

/** A default key id: today's date and 6 random hex digits (`2025-01-31-a1b2c3`). */
export function defaultKid(now = new Date()): string {
  return `${now.toISOString().slice(0, 10)}-${randomBytes(3).toString('hex')}`;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

function checkName(v: string, what: string): string {
  if (!NAME_RE.test(v)) throw new ConfigError(`${what} ${JSON.stringify(v)} is not allowed`, { hint: 'use 1-64 characters of A-Z a-z 0-9 . _ @ - (starting with a letter or digit)' });
  return v;
}

/**
 * Redis commands granted to a Celery/Celeriac worker-and-client user, by
 * purpose. Everything else (`-@all` first) is denied: FLUSHALL, FLUSHDB,
 * CONFIG, KEYS, SCAN, DEBUG, MODULE, SHUTDOWN, ACL, MIGRATE, CLIENT KILL,
 * SCRIPT FLUSH, … (CEL-004). Checked against Redis 7.0 with a Python
 * Celery 5.2.6 worker and client using one such user for broker and
 * backend: tasks, results, failures, groups, chains, chords, task events,
 * `ping` and `inspect`. `CLIENT SETINFO` is left out because Redis 7.0 does
 * not know it (clients that send it ignore the refusal).
 */
export const REDIS_ACL_COMMANDS: Readonly<Record<string, readonly string[]>> = {
  // handshake; ioredis' ready check uses INFO
  connection: ['auth', 'hello', 'ping', 'select', 'echo', 'quit', 'reset', 'info', 'client|setname', 'client|getname', 'client|id'],
  // Celeriac's idle consumers wake on client-side-tracking invalidations of the queue keys (opt-in mode: CACHING YES before each armed read)
  tracking: ['client|tracking', 'client|caching'],
  // task queues: LPUSH to publish, BRPOP to consume, RPUSH to restore, LLEN for queue length, DEL to purge
  queues: ['lpush', 'rpush', 'lpop', 'rpop', 'brpop', 'llen', 'lrange', 'ltrim', 'del', 'exists'],
  // kombu exchange bindings (_kombu.binding.*)
  bindings: ['sadd', 'srem', 'smembers', 'sismember', 'scard'],
  // ack emulation: unacked hash, unacked_index sorted set, unacked_mutex lock
  ackEmulation: ['hset', 'hget', 'hdel', 'hmget', 'hexists', 'zadd', 'zrem', 'zrevrangebyscore', 'zrangebyscore', 'zscore', 'set', 'get'],
  // result backend: celery-task-meta-* with expiry, MGET for groups, chord counters and sorted sets
  results: ['setex', 'psetex', 'mget', 'expire', 'pexpire', 'incr', 'incrby', 'decr', 'zrange', 'zcount', 'zcard'],
  // events, broadcast control and result notifications
  pubsub: ['publish', 'subscribe', 'unsubscribe', 'psubscribe', 'punsubscribe'],
  // pipelines and transactions; kombu's lock release and client-side scripts
  transactions: ['multi', 'exec', 'discard', 'watch', 'unwatch', 'eval', 'evalsha', 'script|load', 'script|exists'],
  // celeriac beat: its scripts read the server's clock (TIME, also the shared rate limits') and the lease's PTTL; status reads the entries hash
  beat: ['time', 'pttl', 'hgetall'],
};

/**
 * Key and channel patterns of Celery's Redis layout (no `global_keyprefix`):
 * each task queue, worker mailbox (`*.celery.pidbox`), control reply queue
 * and event receiver queue with its priority buckets; kombu's bindings and
 * ack-emulation keys; result, group and chord keys; Celeriac's shared rate
 * limits (`celeriac:ratelimit:*`).
 *
 * The replay store (`celeriac:replay:*`, the nonces of signed messages
 * already run) is granted to the `worker` role only: a producer — any
 * client that can send tasks — must not be able to delete a nonce and run
 * a captured message again (issue 20 #1). Redis checks key patterns inside
 * Lua scripts and transactions too.
 *
 * Channels: kombu's fan-out exchanges are PUBLISHed on `/<db>.<exchange>/<routing key>`
 * and PSUBSCRIBEd with exactly these patterns, which Redis ACLs compare
 * literally (a pattern subscription is allowed only when it equals a
 * granted pattern): `/<db>.celeryev/*` (event receivers: `celery events`,
 * Flower), `/<db>.celeryev/worker.*` (a Python worker's gossip, on by
 * default), `/<db>.celery.pidbox` (broadcast remote control). The result
 * backend PUBLISHes every result key on a channel of the same name.
 * `__redis__:invalidate` carries Celeriac's client-tracking wake-ups.
 */
export function redisAclPatterns(queues: readonly string[] = ['celery'], db = 0, anyKey = false, role: Exclude<RedisAclRole, 'both'> = 'worker'): { keys: string[]; channels: string[] } {
  if (anyKey) {
    // Every key but the replay store for producers: Redis key patterns only allow, so "all but one
    // prefix" is spelt as every first character, then for `c…` every second character, and so on.
    return { keys: role === 'worker' ? ['~*'] : allKeysExcept('celeriac:replay:'), channels: ['&*'] };
  }
  // Every queue is a list plus priority buckets `<queue>\x06\x16<n>`; kombu LLENs them all when declaring.
  // Besides task queues: worker mailboxes, control reply queues, event receiver queues.
  const lists = [...queues, '*.celery.pidbox', '*.reply.celery.pidbox', 'celeryev.*'];
  const keys = [
    ...lists.flatMap((q) => [`~${q}`, `~${q}??[0-9]`]),
    ...queues.map((q) => `~${q}.dlq`), // Celeriac's dead-letter lists
    '~_kombu.binding.*', '~unacked', '~unacked_index', '~unacked_mutex',
    '~unacked.dlq', // Celeriac's restorer dead-letters unparsable unacked entries here
    '~celery-task-meta-*', '~celery-taskset-meta-*', '~chord-unlock-*',
    '~????????-????-????-????-????????????.?', // chord counters <group uuid>.j/.t/.s
    '~celeriac:ratelimit:*', // shared send rate limits (clients and workers)
    '~celeriac:beat:*', // celeriac beat's lease and last runs (beat runs with either user)
    ...(role === 'worker' ? ['~celeriac:replay:*'] : []),
    ...(role === 'worker' ? ['~celeriac:revoked:*'] : []), // revoked task ids shared by workers (remote control)
  ];
  const channels = [`&/${db}.celeryev/*`, `&/${db}.celeryev/worker.*`, `&/${db}.celery.pidbox`, '&celery-task-meta-*', '&celery-taskset-meta-*', '&chord-unlock-*', '&__redis__:invalidate'];
  return { keys, channels };
}

/** Redis key patterns matching every key that does not start with `prefix` (letters and `:` only: no glob escaping needed). */
function allKeysExcept(prefix: string): string[] {
  const out: string[] = [];
  // Keys that leave the prefix at character i, and keys that are a proper beginning of it.
  for (let i = 0; i < prefix.length; i++) out.push(`~${prefix.slice(0, i)}[^${prefix[i]!}]*`, ...(i > 0 ? [`~${prefix.slice(0, i)}`] : []));
  return out;
}

/** The ACL rules of one user (keys, `resetchannels`, channels, commands). */
function redisAclRules(queues: readonly string[], db: number, anyKey: boolean, role: Exclude<RedisAclRole, 'both'>): string[] {
  const { keys, channels } = redisAclPatterns(queues, db, anyKey, role);
  const cmds = Object.values(REDIS_ACL_COMMANDS).flat().map((c) => `+${c}`);
  return [...keys, 'resetchannels', ...channels, '-@all', ...cmds];
}

function redisAcl(opts: GenerateOptions): GeneratedSecret {
  const role = opts.role ?? 'both';
  if (!['worker', 'producer', 'both'].includes(role)) throw new ConfigError(`role ${JSON.stringify(role)} is not one of worker, producer, both`);
  const queues = (opts.queues ?? ['celery']).map((q) => checkName(q, 'queue name'));
  const db = opts.db ?? 0;
  if (!Number.isInteger(db) || db < 0 || db > 65535) throw new ConfigError('db must be a database number');
  const host = opts.host ?? 'localhost';
  const roles: Array<Exclude<RedisAclRole, 'both'>> = role === 'both' ? ['worker', 'producer'] : [role];
  const names = {
    worker: checkName(opts.user ?? 'celeriac-worker', 'user name'),
    producer: checkName(opts.producerUser ?? 'celeriac-client', 'producer user name'),
  };
  if (role === 'both' && names.worker === names.producer) throw new ConfigError('the worker and producer users must have different names');
  const items: SecretItem[] = [];
  const aclLines: string[] = [];
  for (const r of roles) {
    const user = names[r];
    const password = generatePassword(opts.length ?? 32);
    const rules = redisAclRules(queues, db, opts.anyKey ?? false, r);
    const hash = createHash('sha256').update(password).digest('hex');
    // The worker's files keep the names of a single-user ACL; the producer's get a prefix when both are made.
    const f = (name: string): string => (r === 'producer' && role === 'both' ? `producer-${name}` : name);
    const who = r === 'worker' ? 'worker' : 'producer';
    const url = `rediss://${user}:${password}@${host}:6379/${db}?ssl_cert_reqs=required`;
    items.push(
      { label: `Redis ${who} user name`, envName: undefined, fileName: f('redis-username'), value: user, sensitive: false },
      { label: `Redis ${who} password`, envName: undefined, fileName: f('redis-password'), value: password, sensitive: true },
      { label: `redis-cli command for the ${who} user (contains the password)`, envName: undefined, fileName: f('redis-acl-setuser.txt'), value: `ACL SETUSER ${user} reset on >${password} ${rules.join(' ')}`, sensitive: true },
      // Read by Celeriac (CELERIAC_*) and by Python Celery (CELERY_BROKER_URL, CELERY_RESULT_BACKEND).
      { label: `${who} broker URL`, envName: 'CELERIAC_BROKER_URL', fileName: f('broker-url'), value: url, sensitive: true },
      { label: `${who} result backend URL`, envName: 'CELERIAC_RESULT_BACKEND', fileName: f('result-backend-url'), value: url, sensitive: true },
      { label: `${who} broker URL (Python Celery)`, envName: 'CELERY_BROKER_URL', fileName: f('celery-broker-url'), value: url, sensitive: true },
      { label: `${who} result backend URL (Python Celery)`, envName: 'CELERY_RESULT_BACKEND', fileName: f('celery-result-backend-url'), value: url, sensitive: true },
    );
    aclLines.push(`user ${user} on #${hash} ${rules.join(' ')}`);
  }
  items.push({ label: 'users.acl lines (passwords stored as SHA-256)', envName: undefined, fileName: 'users.acl', value: aclLines.join('\n'), sensitive: true });
  return {
    kind: 'redis-acl',
    items,
    notes: [
      'Run the ACL SETUSER line(s) with redis-cli (then ACL SAVE), or add the users.acl lines to the file named by `aclfile`.',
      'Also disable the default user: ACL SETUSER default off',
      ...(roles.includes('producer')
        ? ['Give the producer user to clients that only send tasks and read results: it cannot read or change celeriac:replay:*, the nonces that stop a captured signed message from running twice. Workers (Celeriac or Python) get the worker user.']
        : []),
      `Grants: the commands of Celery's Redis transport and result backend only (${Object.keys(REDIS_ACL_COMMANDS).join(', ')}); keys of Celery's layout for queues ${queues.join(', ')}; channels /${db}.celeryev/* and /${db}.celeryev/worker.* (events, a Python worker's gossip), /${db}.celery.pidbox (remote control), result keys (result notification) and __redis__:invalidate (Celeriac's idle wake-up).`,
      'Use --any-key for other layouts (commands stay restricted), --queues to add queues, --role worker|producer to make one user (needed for --format env).',
    ],
  };
}

function rabbitUser(opts: GenerateOptions): GeneratedSecret {
  const user = checkName(opts.user ?? 'celeriac-worker', 'user name');
  const vhost = checkName(opts.vhost ?? 'celeriac', 'vhost');
  const queues = (opts.queues ?? ['celery']).map((q) => checkName(q, 'queue name'));
  const password = generatePassword(opts.length ?? 32);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // Celery's entities (DESIGN: §4.1 of the protocol reference): task exchange/queues, events, pidbox, replies.
  const names = [...queues.map(esc), ...queues.map((q) => `${esc(q)}\\.dlq`), 'celeryev', 'celeryev\\..+', 'celery\\.pidbox', '.+\\.celery\\.pidbox', 'reply\\.celery\\.pidbox', '.+\\.reply\\.celery\\.pidbox'];
  const configure = `^(${names.join('|')})$`;
  const write = `^(amq\\.default|${names.join('|')})$`;
  const read = configure;
  const host = opts.host ?? 'localhost';
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const commands = [
    `rabbitmqctl add_vhost ${q(vhost)}`,
    `rabbitmqctl add_user ${q(user)} ${q(password)}`,
    `rabbitmqctl set_permissions -p ${q(vhost)} ${q(user)} ${q(configure)} ${q(write)} ${q(read)}`,
    `rabbitmqctl set_user_tags ${q(user)}`,
    `rabbitmqctl delete_user guest`,
  ].join('\n');
  return {
    kind: 'rabbitmq-user',
    items: [
      { label: 'RabbitMQ user name', envName: 'CELERIAC_AMQP_USERNAME', fileName: 'amqp-username', value: user, sensitive: false },
      { label: 'RabbitMQ password', envName: 'CELERIAC_AMQP_PASSWORD', fileName: 'amqp-password', value: password, sensitive: true },
      { label: 'rabbitmqctl commands (contain the password)', envName: undefined, fileName: 'rabbitmq-setup.sh', value: commands, sensitive: true },
      { label: 'broker URL', envName: 'CELERIAC_BROKER_URL', fileName: 'broker-url', value: `amqps://${user}:${password}@${host}:5671/${encodeURIComponent(vhost)}`, sensitive: true },
    ],
    notes: [
      `The user gets no tags (no management or administrator access) and permissions only on Celery's entities in vhost ${vhost}; --queues adds task queues.`,
      'The last command removes the default guest user; skip it if something else still needs guest (it should not).',
    ],
  };
}

async function rsaCert(opts: GenerateOptions): Promise<GeneratedSecret> {
  const bits = opts.bits ?? 3072;
  if (!Number.isInteger(bits) || bits < 2048 || bits > 16384) throw new ConfigError('RSA key size must be from 2048 to 16384 bits');
  const days = opts.days ?? 365;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new ConfigError('days must be from 1 to 3650');
  const subject: DistinguishedName = [['O', opts.organization ?? 'Celeriac'], ['CN', opts.commonName ?? 'celeriac-signer']];
  const cert = await createSelfSignedCertificate({ subject, rsaBits: bits, validityDays: days });
  return {
    kind: 'rsa-cert',
    items: [
      { label: 'signing private key (PKCS#8 PEM)', envName: 'CELERIAC_SECURITY_KEY', fileName: 'signing-key.pem', value: cert.keyPem.trimEnd(), sensitive: true },
      { label: 'signing certificate (PEM)', envName: 'CELERIAC_SECURITY_CERTIFICATE', fileName: 'signing-cert.pem', value: cert.certPem.trimEnd(), sensitive: false },
    ],
    notes: [
      `Celery settings: security_key = signing-key.pem, security_certificate = signing-cert.pem, security_cert_store = a directory holding every signer's certificate; task_serializer = 'auth', accept_content = ['auth'].`,
      `Certificate expires ${cert.certificate.x509.validTo}; rotate before then.`,
    ],
  };
}

/**
 * Generate one secret of the given kind:
 *
 * - `password`: {@link generatePassword}.
 * - `redis-acl`: a password, an `ACL SETUSER` command, the same user as a
 *   `users.acl` line (password stored as `#<sha256>`), and a `rediss://`
 *   broker URL. Rules: `-@all` plus {@link REDIS_ACL_COMMANDS}, keys and
 *   channels from {@link redisAclPatterns}.
 * - `rabbitmq-user`: a password, `rabbitmqctl` commands (add the vhost and
 *   user, no tags, `set_permissions` whose configure/write/read regexes
 *   cover exactly Celery's entities — task queues, `celeryev`,
 *   `celeryev.*`, `celery.pidbox`, `*.celery.pidbox`, `reply.celery.pidbox`,
 *   `*.reply.celery.pidbox`, and `amq.default` for writing — then delete
 *   `guest`), and an `amqps://` URL. Checked with RabbitMQ 3.10 and a
 *   Python Celery 5.2.6 worker and client (tasks, chords, events, ping, inspect).
 * - `postgres-roles`: a worker and a producer role with SCRAM passwords,
 *   the SQL that makes them and the engine's schemas (the producer gets no
 *   access to the replay nonces), pg_hba.conf lines and URLs
 *   (`postgres-roles.ts`).
 * - `aes-key`: a result key ring line (`generateResultKey`).
 * - `ed25519`, `hmac`: signing key ring lines (`generateSigningKey`).
 * - `rsa-cert`: an RSA key (default 3072 bits) and a self-signed
 *   certificate for Celery's `auth` serializer.
 */
export async function generateSecret(kind: SecretKind, opts: GenerateOptions = {}): Promise<GeneratedSecret> {
  switch (kind) {
    case 'password':
      return {
        kind,
        items: [{ label: 'password', envName: 'CELERIAC_PASSWORD', fileName: 'password', value: generatePassword(opts.length ?? 32), sensitive: true }],
        notes: [],
      };
    case 'redis-acl':
      return redisAcl(opts);
    case 'rabbitmq-user':
      return rabbitUser(opts);
    case 'postgres-roles':
      return postgresRoles({ password: () => generatePassword(opts.length ?? 32), user: opts.user, producerUser: opts.producerUser, database: opts.database, host: opts.host });
    case 'aes-key': {
      const line = generateResultKey(opts.kid ?? defaultKid());
      return {
        kind,
        items: [{ label: 'result encryption key ring line', envName: 'CELERIAC_RESULT_KEYS', fileName: 'result-keys', value: line, sensitive: true }],
        notes: ['Append the line to the result key ring (newest last); keep old lines until every result they protect has expired.'],
      };
    }
    case 'ed25519':
    case 'hmac': {
      const k = generateSigningKey(kind === 'hmac' ? 'hmac-sha256' : 'ed25519', opts.kid ?? defaultKid());
      const items: SecretItem[] = [{ label: 'signing key ring line (senders)', envName: 'CELERIAC_SIGNING_KEYS', fileName: 'signing-keys', value: k.signingLine, sensitive: true }];
      if (kind === 'ed25519') items.push({ label: 'verifying key ring line (workers that only verify)', envName: 'CELERIAC_VERIFY_KEYS', fileName: 'verify-keys', value: k.verifyingLine, sensitive: false });
      return {
        kind,
        items,
        notes: [kind === 'hmac' ? 'Every sender and verifier needs the same line.' : 'Senders need the signing line; verifiers only the public line. Append to the rings, newest last.'],
      };
    }
    case 'rsa-cert':
      return rsaCert(opts);
    default:
      throw new ConfigError(`unknown secret kind ${JSON.stringify(String(kind))}`, { hint: `use one of ${SECRET_KINDS.join(', ')}` });
  }
}

function shellQuote(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

/**
 * `KEY=value` lines (values shell-quoted when needed; multi-line PEM values
 * inside single quotes); items without a variable name become `#` comments.
 * Refuses a secret that would set one variable twice (a `redis-acl` with
 * both users): the lines are for one process.
 */
export function formatEnv(secret: GeneratedSecret): string {
  const seen = new Set<string>();
  for (const it of secret.items) {
    if (!it.envName) continue;
    if (seen.has(it.envName)) {
      throw new ConfigError(`--format env would set ${it.envName} twice (this ${secret.kind} makes more than one user)`, { hint: 'add --role worker or --role producer: each process gets the variables of its own user' });
    }
    seen.add(it.envName);
  }
  const lines: string[] = [];
  for (const it of secret.items) {
    if (it.envName) lines.push(`${it.envName}=${shellQuote(it.value)}`);
    else lines.push(`# ${it.label}:`, ...it.value.split('\n').map((l) => `# ${l}`));
  }
  return `${lines.join('\n')}\n`;
}

/** Plain text: a lone item prints as just its value (for `$(celeriac secrets generate password)`); several get labels and notes. */
export function formatPlain(secret: GeneratedSecret): string {
  if (secret.items.length === 1 && secret.notes.length === 0) return `${secret.items[0]!.value}\n`;
  const parts = secret.items.map((it) => `# ${it.label}\n${it.value}\n`);
  if (secret.notes.length > 0) parts.push(secret.notes.map((n) => `# ${n}`).join('\n') + '\n');
  return parts.join('\n');
}

/**
 * Write one file per item into `dir` (created 0700 if missing; an existing
 * directory that others may write to is refused): sensitive
 * items mode 0600, public ones 0644. Refuses, before writing anything, if
 * a file exists — unless `force`, which overwrites and resets the mode.
 * Symbolic links are never followed. Returns the paths written.
 */
export function writeSecretFiles(dir: string, secret: GeneratedSecret, force = false): string[] {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Others who may write to the directory could replace the files after we write them (issue 20 #13).
  const unsafe = unsafeDirectory(dir);
  if (unsafe) {
    throw new ConfigError(`refusing to write secrets into ${dir}, which ${unsafe}`, { hint: 'name a new directory (it is created 0700), or run chmod go-w on this one', code: 'ERR_SECRET_FILE_DIR' });
  }
  const paths = secret.items.map((it) => join(dir, it.fileName));
  const existing = paths.filter((p) => {
    try {
      lstatSync(p);
      return true;
    } catch {
      return false;
    }
  });
  if (existing.length > 0 && !force) {
    throw new ConfigError(`refusing to overwrite ${existing.join(', ')}`, { hint: 'choose another --out directory, or pass --force to replace them', code: 'ERR_EXISTS' });
  }
  for (const p of existing) {
    if (lstatSync(p).isSymbolicLink()) throw new ConfigError(`${p} is a symbolic link; refusing to write through it`, { code: 'ERR_EXISTS' });
  }
  secret.items.forEach((it, i) => {
    const p = paths[i]!;
    const mode = it.sensitive ? 0o600 : 0o644;
    // O_EXCL unless forced, O_NOFOLLOW always; mode applies at creation, chmod fixes replaced files.
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW | (force ? fsc.O_TRUNC : fsc.O_EXCL);
    const fd = openSync(p, flags, mode);
    try {
      fchmodSync(fd, mode); // before any byte is written: umask or an old file's mode must not leak the secret
      writeSync(fd, `${it.value}\n`);
    } finally {
      closeSync(fd);
    }
  });
  return paths;
}
