// Imported first by the programs that embed a hub, before anything that imports hub/server.ts:
// ES modules run in import order, so uWebSockets.js is loaded here, quietly (shared/runtime.ts),
// and the later `import uWS from 'uWebSockets.js'` gets the same module from the cache. The
// program then reports a missing native binary with runtimeProblems() in its own words.
import { loadUws } from './runtime.js';

loadUws();
