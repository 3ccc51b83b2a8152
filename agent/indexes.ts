// The agent's typed indexes; the implementation lives in ./indexes/.
export * from './indexes/index.js';
