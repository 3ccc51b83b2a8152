// Bundles the agent's program (agent/main.ts and everything it imports on the way to its first
// answer) into dist/agent/main.js, the `lainlet-agent` bin, over what `tsc` wrote there.
// Why: Node resolves, reads and compiles ~150 ESM files one by one for the unbundled agent,
// ~270 ms of its start-up (issue 13, bench/agent-startup.ts); one file costs a fraction of that.
//
// - What only some agents need stays out of the file: the gRPC mirror (agent/grpc, imported
//   with -grpc.addr; it finds lainlet.proto beside itself) and the embedded hub of -etcd
//   standalone mode (hub/*, where hub/pool.ts finds its worker file) are loaded from tsc's
//   dist/agent/grpc/ and dist/hub/ as before. Packages off the start-up path (gRPC, etcd3,
//   uWebSockets.js, prom-client) and native add-ons stay in node_modules.
// - A linked source map (main.js.map, sources relative to it) lets `node --enable-source-maps`,
//   debuggers and bench/lib/cpuprofile.ts point at agent/*.ts and the packages' files.
// Run by `npm run build` after tsc; test/agent-bundle.test.ts checks what it produced.
import { build } from 'esbuild';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Run-time imports, left as they are written (relative to agent/, which is where the bundle is):
 * `import('../hub/…')` in agent/main.ts (-etcd) and `import('./grpc/server.js')` in
 * agent/agent.ts (-grpc.addr) load tsc's files in dist/hub/ and dist/agent/grpc/.
 */
const lazyExternal = {
  name: 'lazy-external',
  setup(b) {
    b.onResolve({ filter: /^(\.\.\/hub\/|\.\/grpc\/server\.js$)/ }, (args) => (
      args.kind === 'dynamic-import' && /\/agent\/[^/]+\.ts$/.test(args.importer) ? { path: args.path, external: true } : undefined));
  },
};

/**
 * agent/persist.ts's `import { crc32 } from 'node:zlib'` would be hoisted to the top of the
 * bundle, where before Node.js 20.15 it is a link error (a stack trace) before agent/main.ts
 * can say "run Node.js 20.15 or later" (shared/runtime.ts). Served as a property read, it is
 * undefined there, and the check speaks first (test/runtime.test.ts).
 */
const zlibForPersist = {
  name: 'zlib-for-persist',
  setup(b) {
    b.onResolve({ filter: /^node:zlib$/ }, (args) => (args.importer.endsWith('/agent/persist.ts') ? { path: 'zlib-crc32', namespace: 'lainlet' } : undefined));
    b.onLoad({ filter: /^zlib-crc32$/, namespace: 'lainlet' }, () => ({ contents: "import zlib from 'node:zlib';\nexport const crc32 = zlib.crc32;\n", loader: 'js', resolveDir: root }));
  },
};

await build({
  absWorkingDir: root,
  entryPoints: ['agent/main.ts'],
  outfile: 'dist/agent/main.js',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Paths through the node_modules symlink, as installed, not its target.
  preserveSymlinks: true,
  sourcemap: 'linked',
  // The bundled CommonJS packages (pino, ws) call require() for Node's built-ins and optional add-ons.
  banner: { js: "import { createRequire as __lainletCreateRequire } from 'node:module'; const require = __lainletCreateRequire(import.meta.url);" },
  external: [
    // gRPC mirror and standalone mode only (their own files are external above)
    '@grpc/grpc-js', '@grpc/proto-loader', 'etcd3', 'uWebSockets.js',
    // loaded on the first /metrics scrape
    'prom-client',
    // optional native add-ons, required inside try/catch by ws and msgpackr
    'bufferutil', 'utf-8-validate', 'msgpackr-extract',
  ],
  plugins: [lazyExternal, zlibForPersist],
  logLevel: 'warning',
});
process.stdout.write('bundle-agent: dist/agent/main.js\n');
