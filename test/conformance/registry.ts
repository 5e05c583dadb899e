/**
 * The registry half of an engine's conformance run: every scheme the
 * engine declares leads the registry to that engine, and what it declares
 * matches what it has.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Engine } from '../../src/core/engine.ts';
import { ENGINES, SCHEMES } from '../../src/core/schemes.ts';
import { parseConnectionUrl } from '../../src/config/url.ts';
import { engineOf, loadEngine } from '../../src/transport/index.ts';

/** `sample(scheme)`: a URL of this engine with that scheme, as a user would write it. */
export function registryConformance(engine: Engine, sample: (scheme: string) => string): void {
  describe(`engine registry: ${engine.name}`, () => {
    it('answers every scheme it declares, in any case, and the URL parser agrees', async () => {
      const schemes = Object.keys(engine.schemes);
      assert.ok(schemes.length > 0);
      for (const scheme of schemes) {
        for (const url of [sample(scheme), sample(scheme.toUpperCase())]) {
          assert.equal(engineOf(url)?.name, engine.name, url);
          assert.equal(await loadEngine(url), engine, url);
          const parsed = parseConnectionUrl(url);
          assert.equal(parsed.kind, engine.name, url);
          assert.equal(parsed.tls, engine.schemes[scheme]!.tls, url);
          assert.equal(parsed.port, engine.schemes[scheme]!.port, url);
          assert.equal(SCHEMES[scheme]?.kind, engine.name);
        }
      }
    });

    it('its descriptor is the registry\'s facts plus factories that match them', () => {
      const { name, title, network, backend, replay } = ENGINES[engine.name];
      assert.deepEqual({ name: engine.name, title: engine.title, network: engine.network, backend: engine.backend, replay: engine.replay }, { name, title, network, backend, replay });
      assert.equal(typeof engine.createBroker, 'function');
      assert.equal(engine.createBackend !== undefined, backend, 'createBackend exactly when it declares a backend');
      assert.equal(engine.createReplayStore !== undefined, replay !== undefined, 'createReplayStore exactly when it declares a replay scope');
    });
  });
}
