/**
 * TLS client options for broker and backend connections.
 *
 * Sources, merged in this order (later wins):
 * 1. Celery's settings objects `brokerUseSsl` / `broker_use_ssl` and
 *    `redisBackendUseSsl` / `redis_backend_use_ssl` — `true` or an object;
 * 2. the URL's own parameters (`rediss://…?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem`,
 *    PostgreSQL's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
 *
 * Recognised keys (Celery/redis-py/py-amqp snake_case and Node camelCase):
 *
 * | meaning | keys |
 * | --- | --- |
 * | verification | `ssl_cert_reqs`, `cert_reqs`, `certReqs`: `required`/`CERT_REQUIRED`/2, `optional`/`CERT_OPTIONAL`/1 (treated as required: a server always presents a certificate), `none`/`CERT_NONE`/0; `rejectUnauthorized` (boolean) |
 * | host name check | `ssl_check_hostname`, `check_hostname`, `checkHostname` (boolean, default true) |
 * | CA bundle (file) | `ssl_ca_certs`, `ca_certs`, `caCerts`, `caFile`, `sslrootcert` |
 * | client certificate (file) | `ssl_certfile`, `certfile`, `certFile`, `sslcert` |
 * | client key (file) | `ssl_keyfile`, `keyfile`, `keyFile`, `sslkey` |
 * | PEM contents or file | `ca`, `cert`, `key` (a string containing `-----BEGIN` or a Buffer is content, any other string a path) |
 * | CA / cert PEM contents | `ssl_ca_data` |
 * | key passphrase | `ssl_password`, `passphrase`, `key_password` |
 * | SNI / expected name | `server_hostname`, `ssl_server_hostname`, `servername`, `serverName` |
 * | minimum version | `minVersion`, `ssl_min_version` (`TLSv1.2` default, or `TLSv1.3`) |
 * | ciphers | `ciphers` (passed through) |
 *
 * Defaults: verification ON, host name checked against the URL host (or the
 * configured server name), `minVersion: 'TLSv1.2'`, SNI from the host when
 * it is a name (not an IP). Mutual TLS when both a client certificate and a
 * key are given. Turning verification or the host name check off, or a
 * minimum below TLS 1.2, is representable (so the policy can refuse it
 * with a precise message) but only honoured with `unsafeAllowInsecureTls`.
 * Unknown keys are refused, so that a typo cannot silently weaken TLS.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity as defaultCheck, type ConnectionOptions } from 'node:tls';
import { ConfigError } from '../errors.ts';
import { readSecretFile } from './env.ts';
import { fileTrustProblem } from './file-trust.ts';
import { isNetworkUrl, type ConnectionUrl } from './url.ts';

/** A PEM source: a file path or the PEM itself. */
export type PemSource = { path: string } | { pem: string | Buffer };

/** What the TLS settings for one connection amount to, without reading any file. */
export interface TlsAnalysis {
  /** TLS is used at all. */
  enabled: boolean;
  /** Where TLS was switched on: `url` (scheme/params) or the settings object name. */
  enabledBy: string | undefined;
  /** Certificate chain verification is on. */
  verify: boolean;
  /** The server's name is checked against its certificate. */
  checkHostname: boolean;
  /** `TLSv1.2` or `TLSv1.3`; a lower value is reported in `insecure`. */
  minVersion: string;
  ca: PemSource | undefined;
  cert: PemSource | undefined;
  key: PemSource | undefined;
  passphrase: string | undefined;
  servername: string | undefined;
  ciphers: string | undefined;
  /** Client certificate authentication (both cert and key given). */
  mutual: boolean;
  /** Each weakening, with the setting that caused it (e.g. `brokerUseSsl.ssl_cert_reqs`), for the policy. */
  insecure: { setting: string; problem: string }[];
}

/** Options of {@link tlsOptionsFor}. */
export interface TlsBuildOptions {
  /** Honour CERT_NONE / rejectUnauthorized: false / ssl_check_hostname: false / old TLS versions. */
  unsafeAllowInsecureTls?: boolean;
  /** Name of the settings object, for messages (default `brokerUseSsl`). */
  setting?: string;
}

type Field = 'certReqs' | 'rejectUnauthorized' | 'checkHostname' | 'caFile' | 'certFile' | 'keyFile' | 'ca' | 'cert' | 'key' | 'caData' | 'passphrase' | 'servername' | 'minVersion' | 'ciphers' | 'ignored';

const KEY_MAP: Record<string, Field> = {
  ssl_cert_reqs: 'certReqs', cert_reqs: 'certReqs', certreqs: 'certReqs', sslcertreqs: 'certReqs',
  rejectunauthorized: 'rejectUnauthorized', reject_unauthorized: 'rejectUnauthorized',
  ssl_check_hostname: 'checkHostname', check_hostname: 'checkHostname', checkhostname: 'checkHostname',
  ssl_ca_certs: 'caFile', ca_certs: 'caFile', cacerts: 'caFile', cafile: 'caFile', ca_file: 'caFile', sslcacerts: 'caFile', sslrootcert: 'caFile',
  ssl_certfile: 'certFile', certfile: 'certFile', cert_file: 'certFile', sslcertfile: 'certFile', sslcert: 'certFile',
  ssl_keyfile: 'keyFile', keyfile: 'keyFile', key_file: 'keyFile', sslkeyfile: 'keyFile', sslkey: 'keyFile',
  ca: 'ca', cert: 'cert', key: 'key',
  ssl_ca_data: 'caData', ca_data: 'caData', cadata: 'caData',
  ssl_password: 'passphrase', passphrase: 'passphrase', key_password: 'passphrase', keypassword: 'passphrase', sslpassword: 'passphrase',
  server_hostname: 'servername', ssl_server_hostname: 'servername', servername: 'servername', server_name: 'servername', sslservername: 'servername',
  minversion: 'minVersion', min_version: 'minVersion', ssl_min_version: 'minVersion',
  ciphers: 'ciphers', ssl_ciphers: 'ciphers',
  // Switches and options that do not change what we send, accepted for compatibility with Celery configs.
  ssl: 'ignored', tls: 'ignored', sslmode: 'ignored', ssl_version: 'ignored',
};

/** URL query parameters (besides the TLS ones) that are not TLS settings and are skipped when reading the URL. */
function tlsParamField(name: string): Field | undefined {
  const f = KEY_MAP[name.toLowerCase()];
  return f === 'ca' || f === 'cert' || f === 'key' ? undefined : f;
}

type Raw = Partial<Record<Exclude<Field, 'ignored'>, { value: unknown; setting: string }>>;

function collect(into: Raw, obj: Record<string, unknown>, settingName: string, strict: boolean, fromUrl: boolean): void {
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    const field = fromUrl ? tlsParamField(k) : KEY_MAP[k.toLowerCase()];
    if (field === undefined) {
      if (!strict) continue;
      throw new ConfigError(`${settingName}: unknown TLS setting ${JSON.stringify(k)}`, {
        hint: 'use ssl_cert_reqs, ssl_ca_certs, ssl_certfile, ssl_keyfile, servername (or ca, cert, key, rejectUnauthorized); unknown keys are refused so a typo cannot weaken TLS',
        code: 'ERR_TLS_CONFIG',
      });
    }
    if (field === 'ignored') continue;
    into[field] = { value: v, setting: `${settingName}.${k}` };
  }
}

type CertReqs = 'required' | 'optional' | 'none';

function parseCertReqs(v: unknown, setting: string): CertReqs {
  const s = String(v).trim().toLowerCase().replace(/^ssl\./, '').replace(/^verifymode\./, '');
  if (['required', 'cert_required', '2', 'true'].includes(s)) return 'required';
  if (['optional', 'cert_optional', '1'].includes(s)) return 'optional';
  if (['none', 'cert_none', '0', 'false'].includes(s)) return 'none';
  throw new ConfigError(`${setting}: ${JSON.stringify(String(v))} is not a certificate requirement`, {
    hint: 'use required (CERT_REQUIRED); optional and none are also understood', code: 'ERR_TLS_CONFIG',
  });
}

function parseBool(v: unknown, setting: string): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  const s = String(v).trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off'].includes(s)) return false;
  throw new ConfigError(`${setting} must be true or false`, { code: 'ERR_TLS_CONFIG' });
}

function parseMinVersion(v: unknown, setting: string): string {
  const s = String(v).trim().replace(/^(?:ssl\.)?TLSVersion\./i, '').replace(/^tlsv?/i, '').replace('_', '.');
  const map: Record<string, string> = { '1': 'TLSv1', '1.0': 'TLSv1', '1.1': 'TLSv1.1', '1.2': 'TLSv1.2', '1.3': 'TLSv1.3' };
  const out = map[s];
  if (!out) throw new ConfigError(`${setting}: ${JSON.stringify(String(v))} is not a TLS version`, { hint: 'use TLSv1.2 or TLSv1.3', code: 'ERR_TLS_CONFIG' });
  return out;
}

function pemSource(v: unknown, setting: string, asPath: boolean): PemSource {
  if (Buffer.isBuffer(v)) return { pem: v };
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${setting} must be a file path or PEM text`, { code: 'ERR_TLS_CONFIG' });
  if (!asPath || v.includes('-----BEGIN')) return v.includes('-----BEGIN') ? { pem: v } : { path: v };
  return { path: v };
}

/** Whether a settings value switches TLS on (Celery: `True` or a non-empty dict). */
function useSslOn(useSsl: unknown): boolean {
  if (useSsl === true) return true;
  if (typeof useSsl === 'string') return /^(1|true|yes|on)$/i.test(useSsl);
  return typeof useSsl === 'object' && useSsl !== null && !Array.isArray(useSsl) && Object.keys(useSsl).length > 0;
}

/**
 * Work out the TLS settings of a connection without touching the file
 * system. `settingName` names `useSsl` in messages (`brokerUseSsl`,
 * `redisBackendUseSsl`, …); `urlSetting` names the URL (`brokerUrl`, `resultBackend`).
 */
export function analyzeTls(url: ConnectionUrl, useSsl: unknown, settingName = 'brokerUseSsl', urlSetting = 'url'): TlsAnalysis {
  const out: TlsAnalysis = {
    enabled: false, enabledBy: undefined, verify: true, checkHostname: true, minVersion: 'TLSv1.2',
    ca: undefined, cert: undefined, key: undefined, passphrase: undefined, servername: undefined, ciphers: undefined,
    mutual: false, insecure: [],
  };
  if (!isNetworkUrl(url)) return out;
  if (useSsl !== undefined && useSsl !== null && typeof useSsl !== 'boolean' && typeof useSsl !== 'string' && (typeof useSsl !== 'object' || Array.isArray(useSsl))) {
    throw new ConfigError(`${settingName} must be true, false or an object of TLS settings`, { code: 'ERR_TLS_CONFIG' });
  }
  if (url.tls) {
    out.enabled = true;
    out.enabledBy = urlSetting;
  } else if (useSslOn(useSsl)) {
    out.enabled = true;
    out.enabledBy = settingName;
  }
  if (!out.enabled) return out;

  const raw: Raw = {};
  if (typeof useSsl === 'object' && useSsl !== null) collect(raw, useSsl as Record<string, unknown>, settingName, true, false);
  collect(raw, url.params, urlSetting, false, true);

  if (url.kind === 'postgres') {
    const mode = url.params.sslmode;
    if (mode === 'require') {
      out.verify = false;
      out.checkHostname = false;
      out.insecure.push({ setting: `${urlSetting} sslmode`, problem: 'sslmode=require encrypts but does not verify the server certificate' });
    } else if (mode === 'verify-ca') {
      out.checkHostname = false;
      out.insecure.push({ setting: `${urlSetting} sslmode`, problem: 'sslmode=verify-ca does not check the server name' });
    }
  }

  if (raw.certReqs) {
    const r = parseCertReqs(raw.certReqs.value, raw.certReqs.setting);
    if (r === 'none') {
      out.verify = false;
      out.insecure.push({ setting: raw.certReqs.setting, problem: 'certificate verification is off (CERT_NONE)' });
    }
  }
  if (raw.rejectUnauthorized && !parseBool(raw.rejectUnauthorized.value, raw.rejectUnauthorized.setting)) {
    out.verify = false;
    out.insecure.push({ setting: raw.rejectUnauthorized.setting, problem: 'certificate verification is off (rejectUnauthorized: false)' });
  }
  if (raw.checkHostname && !parseBool(raw.checkHostname.value, raw.checkHostname.setting)) {
    out.checkHostname = false;
    out.insecure.push({ setting: raw.checkHostname.setting, problem: 'the server name is not checked against its certificate' });
  }
  if (!out.verify) out.checkHostname = false;
  if (raw.minVersion) {
    out.minVersion = parseMinVersion(raw.minVersion.value, raw.minVersion.setting);
    if (out.minVersion !== 'TLSv1.2' && out.minVersion !== 'TLSv1.3') {
      out.insecure.push({ setting: raw.minVersion.setting, problem: `minimum version ${out.minVersion} is below TLS 1.2` });
    }
  }
  if (raw.caData) out.ca = pemSource(raw.caData.value, raw.caData.setting, false);
  if (raw.ca) out.ca = pemSource(raw.ca.value, raw.ca.setting, true);
  if (raw.caFile) out.ca = { path: String(raw.caFile.value) };
  if (raw.cert) out.cert = pemSource(raw.cert.value, raw.cert.setting, true);
  if (raw.certFile) out.cert = { path: String(raw.certFile.value) };
  if (raw.key) out.key = pemSource(raw.key.value, raw.key.setting, true);
  if (raw.keyFile) out.key = { path: String(raw.keyFile.value) };
  if (raw.passphrase) out.passphrase = String(raw.passphrase.value);
  if (raw.servername) out.servername = String(raw.servername.value);
  if (raw.ciphers) out.ciphers = String(raw.ciphers.value);
  if ((out.cert === undefined) !== (out.key === undefined)) {
    throw new ConfigError(`${settingName}: a client certificate needs both a certificate and its key`, {
      hint: 'give ssl_certfile and ssl_keyfile together (or neither)', code: 'ERR_TLS_CONFIG',
    });
  }
  out.mutual = out.cert !== undefined && out.key !== undefined;
  return out;
}

function readPem(src: PemSource, what: string, secret: boolean): string | Buffer {
  if ('pem' in src) return src.pem;
  if (secret) return readSecretFile(src.path, what);
  // A CA bundle or certificate another user can change is theirs to choose (file-trust.ts, as for secrets, minus the read rule).
  const p = fileTrustProblem(src.path, { secret: false });
  if (p) throw new ConfigError(`${what}: file ${src.path} ${p.problem}`, { hint: `run: ${p.fix}`, code: p.code });
  try {
    return readFileSync(src.path);
  } catch (err) {
    throw new ConfigError(`${what}: file ${src.path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {
      hint: 'check the path and that this user may read it', code: 'ERR_TLS_FILE',
    });
  }
}

/**
 * Node `tls.connect` options for a connection, or `undefined` when the
 * connection does not use TLS. Reads the CA, certificate and key files
 * (key files must not be readable by other users). Throws `ConfigError`
 * when the settings weaken TLS and `unsafeAllowInsecureTls` is not set — the
 * policy normally refuses such settings earlier, with the same names.
 */
export function tlsOptionsFor(url: ConnectionUrl, useSsl: unknown, opts: TlsBuildOptions = {}): ConnectionOptions | undefined {
  const setting = opts.setting ?? 'brokerUseSsl';
  const a = analyzeTls(url, useSsl, setting);
  if (!a.enabled) return undefined;
  if (a.insecure.length > 0 && !opts.unsafeAllowInsecureTls) {
    throw new ConfigError(`insecure TLS settings for ${url.redacted}: ${a.insecure.map((i) => `${i.setting}: ${i.problem}`).join('; ')}`, {
      hint: 'remove them (verification is on by default), or set unsafeAllowInsecureTls: true to accept the risk',
      code: 'ERR_INSECURE_TLS',
    });
  }
  const options: ConnectionOptions = { minVersion: a.minVersion as ConnectionOptions['minVersion'] };
  if (a.ca) options.ca = readPem(a.ca, `${setting} CA certificates`, false);
  if (a.cert) options.cert = readPem(a.cert, `${setting} client certificate`, false);
  if (a.key) options.key = readPem(a.key, `${setting} client key`, true);
  if (a.passphrase !== undefined) options.passphrase = a.passphrase;
  if (a.ciphers !== undefined) options.ciphers = a.ciphers;
  // SNI only carries names (RFC 6066); for an IP the certificate is still checked against the IP.
  const name = a.servername ?? url.host;
  if (name && isIP(name) === 0 && !name.startsWith('/')) options.servername = name;
  if (a.servername !== undefined && isIP(a.servername) !== 0) {
    // Expected identity is an IP: check the certificate against it explicitly.
    const expected = a.servername;
    options.checkServerIdentity = (_host, cert) => defaultCheck(expected, cert);
  }
  options.rejectUnauthorized = a.verify;
  if (!a.checkHostname) options.checkServerIdentity = () => undefined;
  return options;
}
