// `npm run test:long`: the long scenarios (see ava.config.mjs), one file at a time — each
// starts a three-member etcd cluster or 300 agents, and two at once on 2 cores only slow both.
import { base, LONG } from './ava.config.mjs';

export default { ...base, files: LONG, concurrency: 1 };
