// test/watch-repair.test.ts again, with the in-process hubs serving their agents from 2 worker threads
// (testkit TEST_HUB_WORKERS; hub/pool.ts): everything it pins must hold there too.
process.env.LAINLET_TEST_HUB_WORKERS = '2';
await import('../watch-repair.test.js');
