/**
 * Redis fanout names against what Celery 5.2.6 used (golden vectors) and
 * what the generated Redis ACLs grant.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { controlExchange, eventExchange, replyExchange, replyQueueName } from '../../../../src/core/broker.ts';
import { fanoutChannel, globMatches, subscribePattern } from '../../../../src/transport/redis/fanout.ts';
import { redisAclPatterns } from '../../../../src/secrets/generate.ts';
import { listVectors, readVector } from '../../../helpers/fixtures.ts';

describe('redis fanout channels (kombu layout)', () => {
  it('PUBLISH channels equal the captured ones for every event and pidbox request', () => {
    let n = 0;
    for (const file of listVectors('events').filter((f) => !f.includes('pubsub_all'))) {
      const v = readVector<{ redis_channel: string; routing_key: string }>(file);
      assert.equal(fanoutChannel('', 0, eventExchange(), v.routing_key), v.redis_channel, file);
      n++;
    }
    for (const m of readVector<{ messages: Array<{ channel: string; envelope: { properties: { delivery_info: { exchange: string; routing_key: string } } } }> }>('events/redis_pubsub_all.json').messages) {
      const info = m.envelope.properties.delivery_info;
      const ex = info.exchange === 'celeryev' ? eventExchange() : controlExchange();
      assert.equal(fanoutChannel('', 0, ex, info.routing_key), m.channel);
      n++;
    }
    assert.ok(n > 20);
    const ping = readVector<{ redis_channel: string }>('pidbox/redis_request_ping.json');
    assert.equal(fanoutChannel('', 0, controlExchange(), ''), ping.redis_channel);
    assert.equal(fanoutChannel('p:', 3, eventExchange(), 'task.multi'), 'p:/3.celeryev/task.multi');
  });

  it('reply queue names equal the captured list key', () => {
    const reply = readVector<{ redis_key: string; envelope: { properties: { delivery_info: { routing_key: string } } } }>('pidbox/redis_reply_ping.json');
    assert.equal(replyQueueName(reply.envelope.properties.delivery_info.routing_key), reply.redis_key);
    assert.equal(replyExchange().name, 'reply.celery.pidbox');
  });

  it('PSUBSCRIBE patterns are kombu\'s, which the generated ACLs grant literally', () => {
    const granted = redisAclPatterns(['celery'], 0).channels.map((c) => c.slice(1));
    for (const p of [subscribePattern('', 0, eventExchange(), '#'), subscribePattern('', 0, eventExchange(), 'worker.#'), subscribePattern('', 0, controlExchange(), '')]) {
      assert.ok(granted.includes(p), `${p} is granted`);
    }
    assert.equal(subscribePattern('', 0, eventExchange(), '*.heartbeat'), '/0.celeryev/*.heartbeat');
    // Glob characters of names are matched literally.
    assert.equal(subscribePattern('', 0, { name: 'a?[b]', type: 'topic', durable: true }, 'x'), '/0.a\\?\\[b\\]/x');
  });

  it('globMatches reads the patterns it is given as Redis would', () => {
    assert.equal(globMatches('/0.celeryev/*', '/0.celeryev/task.multi'), true);
    assert.equal(globMatches('/0.celeryev/worker.*', '/0.celeryev/worker.heartbeat'), true);
    assert.equal(globMatches('/0.celeryev/worker.*', '/0.celeryev/task.sent'), false);
    assert.equal(globMatches('/0.celery.pidbox', '/0.celery.pidbox'), true);
    assert.equal(globMatches('/0.celery.pidbox', '/0.celery.pidbox/x'), false);
    assert.equal(globMatches('/0.x/*.b*', '/0.x/a.b.c'), true);
    assert.equal(globMatches('/0.x/*.b', '/0.x/a.c'), false);
    assert.equal(globMatches('/0.a\\?\\[b\\]/x', '/0.a?[b]/x'), true);
    assert.equal(globMatches('/0.a\\?/x', '/0.ab/x'), false);
  });
});
