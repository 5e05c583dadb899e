/**
 * Issue 20 #13, the class: a file Celeriac trusts (a secret file, a
 * certificate store, a CA bundle) that another user could swap is refused
 * at start, and `celeriac audit` reports exactly the same files, through
 * one rule (src/config/file-trust.ts). Before, start-up checked owner and
 * directories while the audit looked at mode bits only, and certificate
 * stores and CA files were read whatever their directory.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runAudit } from '../../../src/audit/index.ts';
import { readSecretFile } from '../../../src/config/env.ts';
import { tlsOptionsFor } from '../../../src/config/tls.ts';
import { parseConnectionUrl } from '../../../src/config/url.ts';
import { loadCertStore } from '../../../src/codec/signing/cert-store.ts';
import { fakePrivateKeyPem } from '../../helpers/pki.ts';
import { CertificateError } from '../../../src/codec/signing/errors.ts';
import { ConfigError } from '../../../src/errors.ts';

const root = mkdtempSync(join(tmpdir(), 'celeriac-trust-'));
after(() => rmSync(root, { recursive: true, force: true }));
const uid = process.getuid?.();
const isRoot = uid === 0;
const SECRET = `rediss://worker:Zr8-vQ2_kLm9xTw4Pn7cQ@redis.internal:6379/0`;

let n = 0;
/** A file with `content` in a fresh directory of mode `dirMode`; the file's own mode is `fileMode`. */
function fileIn(dirMode: number, fileMode = 0o600, content = SECRET): { dir: string; path: string } {
  const dir = join(root, `d${++n}`);
  mkdirSync(dir);
  chmodSync(dir, dirMode);
  const path = join(dir, 'f');
  writeFileSync(path, `${content}\n`);
  chmodSync(path, fileMode);
  return { dir, path };
}

/** Start-up's verdict (the error code, or 'ok') and the audit's finding for the same secret file. */
async function both(path: string): Promise<{ startup: string; audit: string | undefined }> {
  let startup = 'ok';
  try {
    readSecretFile(path, 'CELERIAC_BROKER_URL_FILE');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.ok(!e.message.includes('Zr8-vQ2'), 'never the secret');
    startup = `${e.code}: ${e.message}`;
  }
  const r = await runAudit({ env: { CELERIAC_BROKER_URL_FILE: path }, ...(uid !== undefined ? { workerUid: uid } : {}) });
  const f = r.findings.find((x) => x.id === 'CEL-002' && x.setting === 'CELERIAC_BROKER_URL_FILE');
  return { startup, audit: f?.message };
}

describe('trusted files: start-up and audit share one rule (issue 20 #13)', () => {
  const refused: Array<[string, () => string, RegExp]> = [
    ['readable by every user', () => fileIn(0o700, 0o644).path, /is readable by every user \(mode 644\)/],
    ['writable by its group', () => fileIn(0o700, 0o620).path, /is writable by its group \(mode 620\)/],
    ['in a directory every user may write to', () => fileIn(0o777).path, /is in directory .*, which every user may write to \(mode 777\): they could replace the file/],
    ['in a directory its group may write to', () => fileIn(0o770).path, /which its group may write to \(mode 770\)/],
    [
      'a link to a file in an open directory',
      () => {
        const target = fileIn(0o777).path;
        const safe = fileIn(0o700);
        const link = join(safe.dir, 'link');
        symlinkSync(target, link);
        return link;
      },
      /every user may write to/,
    ],
  ];
  for (const [name, make, re] of refused) {
    it(`${name}: refused at start, and the audit says the same`, async () => {
      const path = make();
      const { startup, audit } = await both(path);
      assert.match(startup, /^ERR_SECRET_FILE_(MODE|DIR): /);
      assert.match(startup, re);
      assert.ok(audit, `the audit reports ${path}`);
      assert.match(audit, re);
    });
  }

  it('owned by another user, or in a directory another user owns: refused at start and reported (workerUid)', async (t) => {
    if (!isRoot) return t.skip('needs root to give files to another user');
    const a = fileIn(0o755);
    chownSync(a.path, 65534, 65534);
    const b = fileIn(0o755);
    chownSync(b.dir, 65534, 65534);
    for (const [path, re] of [[a.path, /belongs to another user \(uid 65534\)/], [b.path, /which belongs to another user \(uid 65534\)/]] as const) {
      const { startup, audit } = await both(path);
      assert.match(startup, re);
      assert.ok(audit, `the audit reports ${path}`);
      assert.match(audit, re);
    }
    // An audit run by root without workerUid cannot tell whose files are whose: no owner finding, the other rules stay.
    const r = await runAudit({ env: { CELERIAC_BROKER_URL_FILE: a.path } });
    assert.ok(!r.findings.some((f) => f.setting === 'CELERIAC_BROKER_URL_FILE' && /another user/.test(f.message)));
  });

  it('every way the audit meets a secret file applies the same rule: key-ring variables, scanned secret files, Python security_key', async () => {
    const { dir, path } = fileIn(0o777);
    const byVar = await runAudit({ env: { CELERIAC_SIGNING_KEYS_FILE: path }, celeriacSettings: {} });
    assert.ok(byVar.findings.some((f) => f.setting === 'CELERIAC_SIGNING_KEYS_FILE' && /every user may write to/.test(f.message)), 'CELERIAC_SIGNING_KEYS_FILE');
    const scanned = join(dir, 'redis_password');
    writeFileSync(scanned, 'Zr8-vQ2_kLm9xTw4Pn7cQ\n', { mode: 0o600 });
    const scan = await runAudit({ paths: [scanned] });
    assert.ok(scan.findings.some((f) => f.id === 'CEL-002' && /every user may write to/.test(f.message)), 'a scanned secret file');
    const key = join(dir, 'signer.key');
    writeFileSync(key, fakePrivateKeyPem(), { mode: 0o600 });
    const conf = fileIn(0o700, 0o600, `security_key = ${JSON.stringify(key)}\ntask_serializer = 'auth'\n`);
    const py = join(conf.dir, 'celeryconfig.py');
    writeFileSync(py, `security_key = ${JSON.stringify(key)}\ntask_serializer = 'auth'\n`, { mode: 0o600 });
    const pyAudit = await runAudit({ paths: [py] });
    assert.ok(pyAudit.findings.some((f) => f.id === 'CEL-007' && f.setting === 'security_key' && /every user may write to/.test(f.message)), JSON.stringify(pyAudit.findings.map((f) => [f.id, f.setting])));
  });

  it('private and sticky directories are fine for both', async () => {
    for (const mode of [0o700, 0o755, 0o1777]) {
      const { startup, audit } = await both(fileIn(mode).path);
      assert.equal(startup, 'ok', `mode ${mode.toString(8)}`);
      assert.equal(audit, undefined, `mode ${mode.toString(8)}`);
    }
  });

  it('a certificate store another user could change is refused at load and reported by the audit (CEL-007)', async () => {
    for (const [dirMode, fileMode, re] of [[0o777, 0o644, /every user may write to/], [0o755, 0o666, /is writable by every user/]] as const) {
      const { dir } = fileIn(dirMode, fileMode, '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----');
      assert.throws(() => loadCertStore(dir), (e: unknown) => e instanceof CertificateError && e.reason === 'unsafe-file' && re.test(e.message) && /add a signer of their own/.test(e.message));
      const r = await runAudit({ celeriacSettings: { securityCertStore: dir } });
      const f = r.findings.find((x) => x.id === 'CEL-007' && x.setting === 'securityCertStore');
      assert.ok(f, `the audit reports the store ${dir}`);
      assert.match(f.message, re);
    }
  });

  it('a CA bundle in a directory every user may write to is refused (a swapped CA is a man in the middle)', () => {
    const { path } = fileIn(0o777, 0o644, '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----');
    const url = parseConnectionUrl(`rediss://worker:x@redis.internal:6379/0?ssl_ca_certs=${encodeURIComponent(path)}`);
    assert.throws(() => tlsOptionsFor(url, undefined), (e: unknown) => e instanceof ConfigError && e.code === 'ERR_SECRET_FILE_DIR' && /every user may write to/.test(e.message));
  });
});
