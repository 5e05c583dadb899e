import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileSchedule, crontab, interval } from '../../../src/beat/schedule.ts';
import { ConfigError } from '../../../src/errors.ts';

const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('beat schedule', () => {
  it('interval ticks are multiples of the interval since the epoch, the same on every instance', () => {
    const t = interval(0.5);
    assert.equal(t.latestAtOrBefore(1_000_250), 1_000_000);
    assert.equal(t.nextAfter(1_000_000), 1_000_500);
    assert.equal(t.nextAfter(1_000_499), 1_000_500);
    assert.equal(t.countBetween(1_000_000, 1_002_000, 100), 3); // 500, 1000, 1500
    const o = interval(60, 15);
    assert.equal(o.latestAtOrBefore(at('2026-01-01T00:01:10Z')), at('2026-01-01T00:00:15Z'));
    assert.throws(() => interval(0), ConfigError);
  });

  it('crontab in America/New_York keeps 09:00 local across the spring-forward change (UTC offset -5 → -4)', () => {
    const t = crontab({ minute: 0, hour: 9, timezone: 'America/New_York' });
    // 2026-03-08 02:00 local is the change.
    const first = t.nextAfter(at('2026-03-07T12:00:00Z'));
    assert.equal(iso(first), '2026-03-07T14:00:00.000Z'); // 09:00 EST
    const second = t.nextAfter(first);
    assert.equal(iso(second), '2026-03-08T13:00:00.000Z'); // 09:00 EDT: 23 hours later
    assert.equal(second - first, 23 * 3600_000);
    assert.equal(iso(t.latestAtOrBefore(at('2026-03-08T13:30:00Z'))), '2026-03-08T13:00:00.000Z');
    assert.equal(iso(t.latestAtOrBefore(at('2026-03-08T13:00:00Z'))), '2026-03-08T13:00:00.000Z', 'a tick at exactly t counts');
  });

  it('crontab in Europe/Paris keeps 09:00 local across the autumn change (UTC offset +2 → +1)', () => {
    const t = crontab({ minute: '0', hour: '9', day_of_week: '*', timezone: 'Europe/Paris' });
    const a = t.nextAfter(at('2026-10-24T12:00:00Z'));
    const b = t.nextAfter(a);
    assert.equal(iso(a), '2026-10-25T08:00:00.000Z'); // Sunday 25 October: the change is at 03:00, so 09:00 is already CET
    assert.equal(iso(t.latestAtOrBefore(at('2026-10-25T07:59:59Z'))), '2026-10-24T07:00:00.000Z'); // Saturday 09:00 CEST
    assert.equal(b - a, 24 * 3600_000);
  });

  it('an hourly crontab counts 23 ticks on the spring-forward day in Europe/Paris', () => {
    const t = crontab({ minute: '30', timezone: 'Europe/Paris' });
    // 2026-03-29 local day in Paris: from 2026-03-28T23:00Z to 2026-03-29T22:00Z.
    assert.equal(t.countBetween(at('2026-03-28T23:00:00Z'), at('2026-03-29T22:00:00Z'), 100), 23);
  });

  it('counts the missed ticks of a crontab (every minute for a day), up to a cap', () => {
    const t = crontab({ minute: '*', timezone: 'Europe/Paris' });
    const from = at('2026-03-01T00:00:30Z');
    assert.equal(t.countBetween(from, from + 86_400_000, 2000), 1440);
    assert.equal(t.countBetween(from, from + 86_400_000, 100), 100, 'capped');
  });

  it("Celery's rule: day_of_month and day_of_week must both match when both are set", () => {
    // Friday the 13th at noon UTC. 2026-02-13 and 2026-03-13 are Fridays.
    const t = crontab({ minute: 0, hour: 12, day_of_month: '13', day_of_week: 'fri' });
    const a = t.nextAfter(at('2026-01-01T00:00:00Z'));
    assert.equal(iso(a), '2026-02-13T12:00:00.000Z');
    assert.equal(iso(t.nextAfter(a)), '2026-03-13T12:00:00.000Z');
  });

  it("accepts Celery's beat_schedule shape and names the entry at fault", () => {
    const entries = compileSchedule({
      'add-every-30': { task: 'tasks.add', schedule: 30, args: [2, 2], options: { queue: 'q1', expires: 20, soft_time_limit: 5 } },
      nightly: { task: 'tasks.report', schedule: { minute: '0', hour: '3', day_of_week: 'mon-fri' }, kwargs: { full: true }, catchUp: 'skip' },
    }, { timezone: 'Europe/Paris' });
    assert.equal(entries.length, 2);
    assert.deepEqual(entries[0]!.options, { queue: 'q1', expires: 20, softTimeLimit: 5 });
    assert.equal(entries[0]!.catchUp, 'runOnce');
    assert.equal(entries[1]!.timetable.describe, 'crontab 0 3 * * mon-fri (Europe/Paris)');
    assert.equal(entries[1]!.catchUp, 'skip');
    assert.throws(() => compileSchedule({ x: { task: '', schedule: 1 } }), /beat entry x has no task/);
    assert.throws(() => compileSchedule({ y: { task: 't', schedule: 1, options: { exchange: 'e' } } }), /beat entry y: unsupported option "exchange"/);
    assert.throws(() => compileSchedule({ z: { task: 't', schedule: { minute: '0', hour: '25' } } }), /crontab .* is not valid/);
    assert.throws(() => compileSchedule({ w: { task: 't', schedule: { minute: '0', timezone: 'Mars/Base' } } }), /unknown time zone/);
    assert.throws(() => compileSchedule({ v: { task: 't', schedule: { minute: '0', secnd: 1 } } }), /unknown crontab field "secnd"/);
  });
});
