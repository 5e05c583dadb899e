/**
 * The hot-path event encoder writes the very text the generic path writes
 * (`encodeEventBody(buildEvent(...))`), for every kind of field.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildEvent, encodeEventBody, EventEncoder, type EventSender, type EventType } from '../../../src/protocol/events.ts';

const cases: Array<[EventType, object, string | undefined]> = [
  ['task-received', { name: 'tasks.add', args: '(2, 3)', kwargs: '{}', root_id: 'r', parent_id: null, retries: 0, eta: null, expires: undefined }, 'a1b2'],
  ['task-started', {}, 'id-1'],
  ['task-succeeded', { result: "'héllo \"日本\" 🚀'\n\\", runtime: 2 }, 'id-2'],
  ['task-succeeded', { result: '42', runtime: 0.000123 }, 'id-3'],
  ['task-failed', { exception: "ValueError('x')", traceback: 'Traceback\n  line' }, 'id-4'],
  ['task-revoked', { terminated: true, signum: 15, expired: false }, 'id-5'],
  ['task-sent', { uuid: 'u-6', name: 'x', queue: 'celery', retries: 0, eta: null }, undefined],
  ['worker-heartbeat', { freq: 2, active: 3, processed: 10, loadavg: [0.5, 1, 2.25], sw_ident: 'celeriac', sw_ver: '0.1.0', sw_sys: 'Linux' }, undefined],
  // A field named like a common one: the generic path decides.
  ['task-started', { hostname: 'other', clock: 'x' }, 'id-7'],
];

describe('EventEncoder', () => {
  for (const utcoffset of [0, -1, 5]) {
    it(`writes what encodeEventBody(buildEvent(...)) writes (utcoffset ${utcoffset})`, () => {
      const sender: EventSender = { hostname: 'w1@höst', pid: 4242, utcoffset };
      const enc = new EventEncoder(sender);
      cases.forEach(([type, fields, uuid], i) => {
        const ts = 1_700_000_000.25 + i;
        const expected = encodeEventBody(buildEvent(type, sender, i + 1, uuid === undefined ? fields : { uuid, ...fields }, ts));
        assert.equal(enc.encode(type, i + 1, fields, ts, uuid), expected, `${type} #${i}`);
      });
      // The prefix follows a change of the sender's offset (daylight saving).
      sender.utcoffset = utcoffset + 1;
      assert.equal(enc.encode('task-started', 9, {}, 5, 'z'), encodeEventBody(buildEvent('task-started', sender, 9, { uuid: 'z' }, 5)));
    });
  }
});
