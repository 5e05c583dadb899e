// Property-based robustness: random and mutated inputs to the three
// verifiers. Only their typed errors may escape, nothing may hang, and
// anything accepted must be exactly what was signed or encrypted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decryptResult, DecryptError, encryptResult, generateResultKey, parseResultKeyRing } from '../../../../src/codec/encryption.ts';
import { encodeMsgpack } from '../../../../src/codec/msgpack.ts';
import {
  canonicalSigningInput,
  certStoreFromPems,
  certStoreVerifier,
  combineVerifiers,
  generateSigningKey,
  parseSigningKeyRing,
  rsaMessageSigningKey,
  SIGNATURE_HEADER,
  SIGNED_HEADERS,
  SignatureError,
  signCeleryAuth,
  signMessage,
  verifyCeleryAuth,
  verifyMessage,
  type MessageSignatureClaims,
} from '../../../../src/codec/signing/index.ts';
import type { WireMessage } from '../../../../src/protocol/types.ts';
import { sampleTaskMessage, VECTOR_SIGNER_ID, vectorCert, vectorCertPem, vectorKey, vectors } from './pki.ts';

const RUNS = 10_000;
const SEP = Buffer.from([0, 1]);

/** A byte-level edit. */
type Edit = { op: 'flip' | 'set' | 'insert' | 'delete' | 'truncate' | 'sep'; pos: number; byte: number; len: number };
const editArb: fc.Arbitrary<Edit> = fc.record({
  op: fc.constantFrom('flip', 'set', 'insert', 'delete', 'truncate', 'sep'),
  pos: fc.nat(),
  byte: fc.integer({ min: 0, max: 255 }),
  len: fc.integer({ min: 1, max: 8 }),
});

function applyEdits(base: Buffer, edits: readonly Edit[]): Buffer {
  let b = Buffer.from(base);
  for (const e of edits) {
    const pos = b.length === 0 ? 0 : e.pos % (b.length + 1);
    switch (e.op) {
      case 'flip':
        if (pos < b.length) b[pos]! ^= 1 << (e.byte % 8);
        break;
      case 'set':
        if (pos < b.length) b[pos] = e.byte;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, pos), Buffer.alloc(e.len, e.byte), b.subarray(pos)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + e.len)]);
        break;
      case 'truncate':
        b = b.subarray(0, pos);
        break;
      case 'sep':
        b = Buffer.concat([b.subarray(0, pos), SEP, b.subarray(pos)]);
        break;
    }
  }
  return b;
}

/** Expect only `cls` errors; return true if `fn` succeeded. */
function onlyTyped(fn: () => void, cls: new (...args: never[]) => Error): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (!(err instanceof cls)) throw new Error(`unexpected ${String((err as Error)?.name)}: ${String((err as Error)?.message)}`, { cause: err });
    return false;
  }
}

describe('fuzz: verifyCeleryAuth', () => {
  const store = certStoreFromPems(vectorCertPem);
  const inners = new Map<string, Buffer>();
  const payloads: Buffer[] = [];
  for (const name of ['signed_by_celery', 'signed_independently', 'signed_main_format']) {
    const m = vectors.messages[name]!;
    const s = Buffer.from(m.envelope.body, 'base64');
    payloads.push(Buffer.from(s.toString('latin1'), 'base64'));
    inners.set(Buffer.from(m.fields!.body).toString('hex'), Buffer.from(m.fields!.body));
  }
  const binary = Buffer.from([0x93, 0x00, 0x01, 0xff]);
  for (const layout of ['celery-5.2', 'celery-5.5'] as const) {
    const inner = layout === 'celery-5.2' ? Buffer.from('{"x": [1, 2, 3]}') : binary;
    inners.set(inner.toString('hex'), inner);
    payloads.push(Buffer.from(signCeleryAuth(inner, 'application/json', 'utf-8', { key: vectorKey, cert: vectorCert, layout }).toString('latin1'), 'base64'));
  }
  const b64 = (b: Buffer): Buffer => Buffer.from(b.toString('base64'), 'latin1');

  const input: fc.Arbitrary<Buffer> = fc.oneof(
    // Mutated payloads, re-wrapped in base64 so they reach the parser.
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...payloads), fc.array(editArb, { minLength: 1, maxLength: 4 })).map(([p, e]) => b64(applyEdits(p, e))) },
    // Mutated base64 text.
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...payloads), fc.array(editArb, { minLength: 1, maxLength: 3 })).map(([p, e]) => applyEdits(b64(p), e)) },
    // Random bytes, raw and base64-wrapped.
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((u) => b64(Buffer.from(u))) },
    // Structured garbage: plausible signer fields, random signature, random tail.
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom(Buffer.from(VECTOR_SIGNER_ID), Buffer.from(Buffer.from(VECTOR_SIGNER_ID).toString('base64')), Buffer.from('unknown 1')),
          fc.oneof(fc.uint8Array({ minLength: 256, maxLength: 256 }), fc.uint8Array({ maxLength: 400 })),
          fc.boolean(),
          fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 }),
        )
        .map(([signer, sig, b64sig, tail]) =>
          b64(Buffer.concat([signer, SEP, b64sig ? Buffer.from(Buffer.from(sig).toString('base64')) : Buffer.from(sig), ...tail.flatMap((t) => [SEP, Buffer.from(t)])])),
        ),
    },
  );

  it(`only SignatureError escapes, and only signed inner bodies are accepted (${RUNS} runs)`, { timeout: 180_000 }, () => {
    let runs = 0;
    let accepted = 0;
    fc.assert(
      fc.property(input, (body) => {
        runs++;
        let result: ReturnType<typeof verifyCeleryAuth> | undefined;
        const ok = onlyTyped(() => {
          result = verifyCeleryAuth(body, store);
        }, SignatureError);
        if (ok) {
          accepted++;
          assert.equal(result!.signerId, VECTOR_SIGNER_ID);
          assert.ok(inners.has(result!.inner.toString('hex')), 'an accepted inner body must be one that was signed');
        }
      }),
      { numRuns: RUNS },
    );
    assert.ok(runs >= RUNS);
    // Some edits (e.g. in the unsigned content-type field) keep the message valid: the success path is exercised too.
    assert.ok(accepted > 0 && accepted < runs, `accepted ${accepted} of ${runs}`);
  });
});

describe('fuzz: verifyMessage', () => {
  const ed = parseSigningKeyRing(generateSigningKey('ed25519', 'ed').signingLine);
  const hm = parseSigningKeyRing(generateSigningKey('hmac-sha256', 'hm').signingLine);
  const ring = parseSigningKeyRing([...ed.keys(), ...hm.keys()].map((k) => k.verifyingLine()).join('\n'));
  const store = certStoreFromPems(vectorCertPem);
  const verifier = combineVerifiers(ring, certStoreVerifier(store));
  const NOW = Date.now();
  const originals = [
    signMessage(sampleTaskMessage(), ed.current(), { ttlMs: 3_600_000, now: NOW }),
    signMessage(sampleTaskMessage({ eta: '2026-01-01T00:00:00+00:00', group: 'g', timelimit: [10, 5] }), hm.current(), { ttlMs: 3_600_000, now: NOW }),
    signMessage(sampleTaskMessage(), rsaMessageSigningKey(vectorKey, vectorCert), { ttlMs: 3_600_000, now: NOW }),
  ];
  const claimsOf = (m: WireMessage): MessageSignatureClaims => {
    const { v: _v, sig: _s, ...claims } = m.headers[SIGNATURE_HEADER] as Record<string, unknown>;
    return claims as unknown as MessageSignatureClaims;
  };

  const anything = fc.anything({ withBigInt: true, withNullPrototype: true, withBoxedValues: true, withMap: true, withSet: true, withDate: true, withTypedArray: true, withSparseArray: true, maxDepth: 3 });
  const headerField = fc.constantFrom('v', 'alg', 'kid', 'iat', 'exp', 'nonce', 'sig', 'extra');
  type Mutation =
    | { kind: 'sigField'; field: string; value: unknown; remove: boolean }
    | { kind: 'header'; name: string; value: unknown; remove: boolean }
    | { kind: 'body'; edits: Edit[] }
    | { kind: 'content'; contentType: string; contentEncoding: string }
    | { kind: 'sigValue'; value: unknown }
    | { kind: 'headers'; value: unknown }
    | { kind: 'sigText'; edits: Edit[] };
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('sigField' as const), field: headerField, value: anything, remove: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('header' as const), name: fc.oneof(fc.constantFrom(...SIGNED_HEADERS), fc.constantFrom('argsrepr', 'origin', 'lang')), value: anything, remove: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('body' as const), edits: fc.array(editArb, { minLength: 1, maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('content' as const), contentType: fc.string(), contentEncoding: fc.string() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sigValue' as const), value: anything }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('headers' as const), value: fc.dictionary(fc.string(), anything, { maxKeys: 20 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('sigText' as const), edits: fc.array(editArb, { minLength: 1, maxLength: 2 }) }) },
  );

  function mutate(m: WireMessage, mu: Mutation): WireMessage {
    const headers: Record<string, unknown> = { ...m.headers };
    const sig: Record<string, unknown> = { ...(headers[SIGNATURE_HEADER] as Record<string, unknown>) };
    switch (mu.kind) {
      case 'sigField':
        if (mu.remove) delete sig[mu.field];
        else sig[mu.field] = mu.value;
        return { ...m, headers: { ...headers, [SIGNATURE_HEADER]: sig } };
      case 'sigText':
        sig.sig = applyEdits(Buffer.from(typeof sig.sig === 'string' ? sig.sig : ''), mu.edits).toString('latin1');
        return { ...m, headers: { ...headers, [SIGNATURE_HEADER]: sig } };
      case 'header':
        if (mu.remove) delete headers[mu.name];
        else headers[mu.name] = mu.value;
        return { ...m, headers };
      case 'body':
        return { ...m, body: applyEdits(m.body, mu.edits) };
      case 'content':
        return { ...m, contentType: mu.contentType, contentEncoding: mu.contentEncoding };
      case 'sigValue':
        return { ...m, headers: { ...headers, [SIGNATURE_HEADER]: mu.value } };
      case 'headers':
        return { ...m, headers: mu.value as Record<string, unknown> };
    }
  }

  it(`only SignatureError escapes, and accepted messages sign exactly the original input (${RUNS} runs)`, { timeout: 180_000 }, () => {
    let runs = 0;
    let accepted = 0;
    fc.assert(
      fc.property(fc.constantFrom(...originals), fc.array(mutation, { minLength: 1, maxLength: 3 }), (original, mutations) => {
        runs++;
        const m = mutations.reduce(mutate, original);
        let claims: MessageSignatureClaims | undefined;
        const ok = onlyTyped(() => {
          claims = verifyMessage(m, verifier, { now: NOW });
        }, SignatureError);
        if (ok) {
          accepted++;
          assert.deepEqual(claims, claimsOf(original));
          assert.deepEqual(canonicalSigningInput(m, claims!), canonicalSigningInput(original, claimsOf(original)));
        }
      }),
      { numRuns: RUNS },
    );
    assert.ok(runs >= RUNS);
    assert.ok(accepted > 0 && accepted < runs, `accepted ${accepted} of ${runs}`);
  });
});

describe('fuzz: decryptResult', () => {
  const TASK = 'f84e2523-cf2a-48b1-8390-437cb52f3f28';
  const ring = parseResultKeyRing(`${generateResultKey('a')}\n${generateResultKey('b')}`);
  const plains = [
    Buffer.from(JSON.stringify({ status: 'SUCCESS', result: { secret: 'x' }, traceback: null, children: [], date_done: '2026-01-01T00:00:00', task_id: TASK })),
    encodeMsgpack({ status: 'FAILURE', result: { exc_type: 'ValueError', exc_message: ['bad'], exc_module: 'builtins' }, task_id: TASK }),
  ];
  const records = [
    encryptResult(plains[0]!, { taskId: TASK, status: 'SUCCESS', dateDone: '2026-01-01T00:00:00' }, ring),
    encryptResult(plains[1]!, { taskId: TASK, status: 'FAILURE', dateDone: null }, ring),
  ];
  const plainHex = new Set(plains.map((p) => p.toString('hex')));

  const fieldEdit = fc.record({
    path: fc.constantFrom('status', 'task_id', 'date_done', 'result', 'children', 'celeriac_encrypted', 'e.v', 'e.alg', 'e.kid', 'e.iv', 'e.ct', 'e.tag', 'e.extra', '__proto__'),
    value: fc.jsonValue({ maxDepth: 2 }),
    remove: fc.boolean(),
  });
  const input = fc.oneof(
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...records), fc.array(editArb, { minLength: 1, maxLength: 4 })).map(([r, e]) => applyEdits(r, e)) },
    {
      weight: 4,
      arbitrary: fc.tuple(fc.constantFrom(...records), fc.array(fieldEdit, { minLength: 1, maxLength: 3 })).map(([r, edits]) => {
        const rec = JSON.parse(r.toString());
        for (const ed of edits) {
          const [target, key] = ed.path.startsWith('e.') && rec.celeriac_encrypted && typeof rec.celeriac_encrypted === 'object' ? [rec.celeriac_encrypted, ed.path.slice(2)] : [rec, ed.path];
          if (ed.remove) delete target[key];
          else if (key === '__proto__') Object.defineProperty(target, key, { value: ed.value, enumerable: true, configurable: true, writable: true });
          else target[key] = ed.value;
        }
        return Buffer.from(JSON.stringify(rec));
      }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
  );

  it(`only DecryptError escapes, and anything decrypted is an original plaintext (${RUNS} runs)`, { timeout: 180_000 }, () => {
    let runs = 0;
    let accepted = 0;
    fc.assert(
      fc.property(input, fc.oneof({ weight: 5, arbitrary: fc.constant(TASK) }, { weight: 1, arbitrary: fc.string() }), (payload, taskId) => {
        runs++;
        let out: Buffer | undefined;
        const ok = onlyTyped(() => {
          out = decryptResult(payload, taskId, ring);
        }, DecryptError);
        if (ok) {
          accepted++;
          assert.equal(taskId, TASK);
          assert.ok(plainHex.has(out!.toString('hex')));
        }
      }),
      { numRuns: RUNS },
    );
    assert.ok(runs >= RUNS);
    assert.ok(accepted > 0 && accepted < runs, `accepted ${accepted} of ${runs}`);
  });
});
