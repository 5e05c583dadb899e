/**
 * The Python configuration reader: settings come out of celeryconfig.py,
 * `app.conf.update(...)`, `Celery(...)` keywords and Django `CELERY_*`
 * names by parsing alone — literals, containers, f-strings, env and file
 * references — and nothing is ever executed.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runAudit } from '../../../src/audit/index.ts';
import { parsePythonConfig, type PyValue } from '../../../src/audit/python/parse.ts';
import { celerySettingName, collectPythonSettings, ENV_PLACEHOLDER, pyToJs, readPythonFile } from '../../../src/audit/static/python.ts';

const noEnv = () => undefined;

function setting(src: string, name: string): PyValue {
  const s = collectPythonSettings([readPythonFile('/x/celeryconfig.py', src)]).get(name);
  assert.ok(s, `setting ${name} not found`);
  return s.value;
}

describe('Python config parser', () => {
  it('reads literals, containers and lines from a celeryconfig module', () => {
    const src = [
      '# comment',
      'import ssl',
      "broker_url = 'redis://:pw@h:6379/0'  # trailing comment",
      'accept_content = ["json",',
      "    'msgpack']",
      "result_expires = 3600",
      "broker_use_ssl = {'ssl_cert_reqs': ssl.CERT_NONE, 'ssl_ca_certs': r'C:\\ca.pem'}",
      'task_time_limit = None',
      "worker_enable_remote_control = False",
      'accept_content2 = ("a", "b")',
      "task_serializer = 'js' 'on'",
      '',
    ].join('\n');
    const mod = parsePythonConfig(src);
    const byName = new Map(mod.assignments.map((a) => [a.name, a]));
    assert.equal(byName.get('broker_url')!.line, 3);
    assert.equal(byName.get('result_expires')!.line, 6);
    assert.deepEqual(pyToJs(setting(src, 'accept_content'), noEnv).value, ['json', 'msgpack']);
    assert.deepEqual(pyToJs(setting(src, 'broker_use_ssl'), noEnv).value, { ssl_cert_reqs: 'ssl.CERT_NONE', ssl_ca_certs: 'C:\\ca.pem' });
    assert.equal(pyToJs(setting(src, 'task_time_limit'), noEnv).value, null);
    assert.equal(pyToJs(setting(src, 'worker_enable_remote_control'), noEnv).value, false);
    assert.equal(pyToJs(setting(src, 'task_serializer'), noEnv).value, 'json');
  });

  it('notes environment references, resolves them when the deployment environment is known, and uses a strong placeholder inside strings otherwise', () => {
    const src = [
      'import os',
      "broker_url = os.environ['CELERY_BROKER_URL']",
      "result_backend = os.getenv('BACKEND', 'redis://localhost:6379/1')",
      'task_serializer = os.environ.get("SER") or "json"',
      "security_key = f\"redis://celery:{os.environ['REDIS_PW']}@redis.internal:6379/0\"",
    ].join('\n');
    const broker = setting(src, 'broker_url');
    assert.equal(broker.k, 'env');
    const unresolved = pyToJs(broker, noEnv);
    assert.equal(unresolved.unknown, true);
    assert.deepEqual(unresolved.env, ['CELERY_BROKER_URL']);
    assert.equal(pyToJs(broker, (n) => (n === 'CELERY_BROKER_URL' ? { value: 'amqp://u:p@h//' } : undefined)).value, 'amqp://u:p@h//');
    assert.equal(pyToJs(setting(src, 'result_backend'), noEnv).value, 'redis://localhost:6379/1');
    assert.equal(pyToJs(setting(src, 'task_serializer'), noEnv).value, 'json');
    const f = setting(src, 'security_key');
    assert.equal(f.k, 'fstr');
    assert.equal(pyToJs(f, noEnv).value, `redis://celery:${ENV_PLACEHOLDER}@redis.internal:6379/0`);
  });

  it('reads Celery(...) keywords, app.conf.update(...) (keywords and dict), app.conf.x = ..., and Django CELERY_* names', () => {
    const src = [
      'from celery import Celery',
      "app = Celery('proj', broker='amqp://guest:guest@localhost//', backend='redis://localhost')",
      'app.conf.update(',
      "    task_serializer='pickle',",
      "    **{'result_serializer': 'pickle'},",
      ')',
      "app.conf.update({'accept_content': ['pickle']})",
      "app.conf.result_expires = None",
      "app.config_from_object('django.conf:settings', namespace='CELERY')",
      "CELERY_TASK_TIME_LIMIT = 30",
      "BROKER_USE_SSL = True",
      'def configure():',
      "    broker_url = 'not-a-setting'",
    ].join('\n');
    const mod = parsePythonConfig(src);
    assert.equal(mod.celeryApp, true);
    assert.deepEqual(mod.namespaces, ['CELERY']);
    const settings = collectPythonSettings([readPythonFile('/x/proj/celery.py', src)]);
    const js = (n: string) => pyToJs(settings.get(n)!.value, noEnv).value;
    assert.equal(js('broker_url'), 'amqp://guest:guest@localhost//');
    assert.equal(js('result_backend'), 'redis://localhost');
    assert.equal(js('task_serializer'), 'pickle');
    assert.equal(js('result_serializer'), 'pickle');
    assert.deepEqual(js('accept_content'), ['pickle']);
    assert.equal(js('result_expires'), null);
    assert.equal(js('task_time_limit'), 30);
    assert.equal(js('broker_use_ssl'), true);
    assert.equal(settings.get('task_serializer')!.line, 4);
    assert.equal(settings.get('broker_url')!.line, 2, 'a local variable inside a function is not a setting');
  });

  it('maps old and namespaced names to Celery setting names', () => {
    assert.equal(celerySettingName('CELERY_BROKER_URL'), 'broker_url');
    assert.equal(celerySettingName('BROKER_URL'), 'broker_url');
    assert.equal(celerySettingName('CELERY_ACCEPT_CONTENT'), 'accept_content');
    assert.equal(celerySettingName('CELERY_TASK_RESULT_EXPIRES'), 'result_expires');
    assert.equal(celerySettingName('CELERYD_TASK_TIME_LIMIT'), 'task_time_limit');
    assert.equal(celerySettingName('broker'), 'broker_url');
    assert.equal(celerySettingName('backend'), 'result_backend');
  });

  it('turns what it cannot evaluate into dynamic values and never throws on broken source', () => {
    const v = parsePythonConfig("broker_url = get_url() + '/0'\nx = [1, 2\n").assignments[0]!.value;
    assert.equal(v.k, 'dynamic');
    for (const bad of ["a = 'unterminated", 'b = (((', 'c = """never closed', '\\\n', 'd = {1: }', 'e = f"{x"']) {
      assert.doesNotThrow(() => parsePythonConfig(bad), bad);
    }
  });

  it('reads file references and module variables inside f-strings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-parse-'));
    try {
      const pw = join(dir, 'pw');
      writeFileSync(pw, 'Zq8vT3nR6wK1pL9xM4bY7cD2\n', { mode: 0o600 });
      const src = `_pw = open(${JSON.stringify(pw)}).read().strip()\nbroker_url = f"rediss://celery:{_pw}@h:6379/0"\n`;
      const v = pyToJs(setting(src, 'broker_url'), noEnv, new Map(parsePythonConfig(src).assignments.map((a) => [a.name, a.value])));
      assert.equal(v.value, 'rediss://celery:Zq8vT3nR6wK1pL9xM4bY7cD2@h:6379/0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says which transports it does not judge, and flags the default guest broker of an app without broker_url', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-rpc-'));
    try {
      writeFileSync(join(dir, 'app.py'), "from celery import Celery\napp = Celery('p', backend='rpc://')\n");
      const r = await runAudit({ paths: [dir] });
      const rpc = r.findings.find((f) => f.setting === 'result_backend' && f.severity === 'info');
      assert.ok(rpc && /rpc/.test(rpc.message), JSON.stringify(r.findings));
      assert.ok(r.findings.some((f) => f.id === 'CEL-011' && f.setting === 'broker_url' && /guest/.test(f.message)));
      assert.ok(!r.findings.some((f) => f.id === 'CEL-014' && f.severity !== 'info'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never executes a configuration file: one whose execution would write a file leaves no file behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-noexec-'));
    try {
      const marker = join(dir, 'EXECUTED');
      writeFileSync(join(dir, 'celeryconfig.py'), [
        'import os',
        `open(${JSON.stringify(marker)}, 'w').write('ran')`,
        `os.system("touch ${marker}")`,
        `__import__('pathlib').Path(${JSON.stringify(marker)}).write_text('ran')`,
        "broker_url = 'redis://127.0.0.1:6379/0'",
        "accept_content = ['pickle']",
      ].join('\n'));
      const report = await runAudit({ paths: [dir] });
      assert.ok(report.findings.some((f) => f.id === 'CEL-005'), 'the file was read');
      assert.equal(existsSync(marker), false, 'the configuration was executed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
