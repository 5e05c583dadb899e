/**
 * AMQP's exchange routing, pure, for the engines that emulate exchanges
 * (Redis pub/sub, SQLite, memory): a topic binding key is words separated
 * by `.`, where `*` stands for exactly one word and `#` for zero or more.
 * Matched word by word without regular expressions, so a hostile key
 * cannot make matching slow (at most keys × words steps).
 */
import type { ExchangeType } from '../../core/broker.ts';

/** Whether a topic binding key matches a routing key (AMQP 0-9-1 rules, as RabbitMQ applies them). */
export function topicMatches(bindingKey: string, routingKey: string): boolean {
  const pattern = bindingKey.split('.');
  const words = routingKey.split('.');
  // reach[j]: the first i pattern words can match the first j routing words.
  let reach = new Array<boolean>(words.length + 1).fill(false);
  reach[0] = true;
  for (const p of pattern) {
    const next = new Array<boolean>(words.length + 1).fill(false);
    if (p === '#') {
      // Zero or more words: everything reachable so far, and anything after it.
      let any = false;
      for (let j = 0; j <= words.length; j++) {
        any ||= reach[j]!;
        next[j] = any;
      }
    } else {
      for (let j = 0; j < words.length; j++) {
        if (reach[j] && (p === '*' || p === words[j])) next[j + 1] = true;
      }
    }
    reach = next;
  }
  // An empty routing key is zero words, not one empty word: only `#` (and the empty key) take it.
  if (routingKey === '') return bindingKey === '' || pattern.every((p) => p === '#');
  return reach[words.length]!;
}

/**
 * Whether a message published with `routingKey` reaches a queue bound with
 * `bindingKey` on an exchange of `type`.
 */
export function bindingMatches(type: ExchangeType, bindingKey: string, routingKey: string): boolean {
  switch (type) {
    case 'fanout':
      return true;
    case 'direct':
      return bindingKey === routingKey;
    case 'topic':
      return topicMatches(bindingKey, routingKey);
  }
}

/** Whether any of `bindingKeys` takes the message. */
export function anyBindingMatches(type: ExchangeType, bindingKeys: readonly string[], routingKey: string): boolean {
  for (const k of bindingKeys) if (bindingMatches(type, k, routingKey)) return true;
  return false;
}
