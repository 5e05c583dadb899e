/**
 * Log levels (Celery's names) and the two line formats.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger, defaultLogFormat, formatTextLine, parseLogFormat, parseLogLevel } from '../../../src/observability/logging.ts';

function capture(format: 'json' | 'text', level: Parameters<typeof createLogger>[0] extends infer O ? (O extends { level?: infer L } ? L : never) : never = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ destination: { write: (s: string) => void lines.push(s) }, format, level });
  return { logger, lines };
}

describe('log levels', () => {
  it("accepts Celery's level names in any case", () => {
    assert.equal(parseLogLevel('warning'), 'warn');
    assert.equal(parseLogLevel('WARNING'), 'warn');
    assert.equal(parseLogLevel('critical'), 'fatal');
    assert.equal(parseLogLevel('fatal'), 'fatal');
    assert.equal(parseLogLevel('Info'), 'info');
    assert.equal(parseLogLevel('debug'), 'debug');
  });

  it('refuses an unknown level with the valid names', () => {
    assert.throws(() => parseLogLevel('verbose', '--loglevel'), (e: unknown) => e instanceof ConfigError && /--loglevel "verbose".*warning.*critical/.test(e.message));
    assert.throws(() => parseLogLevel('constructor'), ConfigError);
  });

  it('creates a logger from CELERIAC_LOG_LEVEL=warning and =critical', () => {
    for (const [name, want] of [['warning', 'warn'], ['critical', 'fatal']] as const) {
      const before = process.env.CELERIAC_LOG_LEVEL;
      process.env.CELERIAC_LOG_LEVEL = name;
      try {
        assert.equal(createLogger({ destination: { write: () => undefined } }).level, want);
      } finally {
        if (before === undefined) delete process.env.CELERIAC_LOG_LEVEL;
        else process.env.CELERIAC_LOG_LEVEL = before;
      }
    }
  });
});

describe('log formats', () => {
  it('chooses text on a terminal and JSON otherwise, unless CELERIAC_LOG_FORMAT says', () => {
    assert.equal(defaultLogFormat({}, true), 'text');
    assert.equal(defaultLogFormat({}, false), 'json');
    assert.equal(defaultLogFormat({ CELERIAC_LOG_FORMAT: 'json' }, true), 'json');
    assert.equal(defaultLogFormat({ CELERIAC_LOG_FORMAT: 'TEXT' }, false), 'text');
    assert.throws(() => parseLogFormat('yaml'), ConfigError);
  });

  it('writes one JSON object per line in json format', () => {
    const { logger, lines } = capture('json');
    logger.info({ task: 'tasks.add', id: 'abc' }, 'task succeeded');
    const o = JSON.parse(lines.join('')) as Record<string, unknown>;
    assert.equal(o.msg, 'task succeeded');
    assert.equal(o.level, 30);
  });

  it('writes one readable line per event in text format: local time, level name, message, fields', () => {
    const { logger, lines } = capture('text');
    logger.info({ task: 'tasks.add', id: 'abc' }, 'task succeeded');
    logger.warn('careful now');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, new RegExp(`^\\[\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3} INFO/${process.pid}\\] task succeeded  task=tasks.add id=abc\\n$`));
    assert.match(lines[1]!, /^\[[^\]]* WARNING\/\d+\] careful now\n$/);
    // Local time, not UTC: the hour printed is the local hour.
    const hour = String(new Date().getHours()).padStart(2, '0');
    assert.match(lines[0]!, new RegExp(` ${hour}:`));
  });

  it('shows an error with its type and message on the line, and its stack below at error level', () => {
    const { logger, lines } = capture('text');
    logger.error({ err: new TypeError('bad thing') }, 'it failed');
    assert.match(lines[0]!, /ERROR\/\d+\] it failed  error="TypeError: bad thing"\n {4}at /);
  });

  it('shortens a policy warning to its first clause with a pointer to the full text, once per process', () => {
    const line = JSON.stringify({
      level: 40, time: Date.now(), pid: 1, securityEvent: 'policy_warning', id: 'CEL-903', setting: 'brokerUrl',
      reason: 'brokerUrl (redis://127.0.0.1:6379/0) connects to 127.0.0.1 without TLS: anyone on the network path can read and change tasks (allowed in development)',
      fix: 'use rediss://', msg: 'security event policy_warning: …',
    });
    const first = formatTextLine(line)!;
    assert.match(first, /WARNING\/1\] CEL-903 brokerUrl \(redis:\/\/127\.0\.0\.1:6379\/0\) connects to 127\.0\.0\.1 without TLS \(full text and fix: --log-format json, or docs\/mitigations\.md#cel-903\)\n$/);
    assert.ok(first.length < 200, `short: ${first.length} characters`);
    assert.equal(formatTextLine(line), undefined, 'shown once');
  });
});
