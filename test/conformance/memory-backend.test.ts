import { createMemoryBackend } from '../../src/transport/memory/backend.ts';
import { backendConformance } from './backend.ts';

// Each memory backend is private to its instance, so the cross-instance test is left to the real stores.
backendConformance('memory', { shared: false, create: async () => createMemoryBackend() });
