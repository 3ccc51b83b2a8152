// The unit files: they pass systemd-analyze verify and carry the hardening operators expect.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../systemd/', import.meta.url));
const units = ['lainlet-hub.service', 'lainlet-agent.service'];

test('both units pass systemd-analyze verify', (t) => {
  const out = execFileSync('systemd-analyze', ['verify', ...units.map((u) => dir + u)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.is(out.trim(), '');
});

for (const unit of units) {
  test(`${unit}: restart always, a dedicated user, hardening, enough file descriptors`, (t) => {
    const text = readFileSync(dir + unit, 'utf8');
    for (const line of ['Restart=always', 'User=lainlet', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'KillSignal=SIGTERM']) {
      t.true(text.includes(`\n${line}\n`), `${unit} has ${line}`);
    }
    const nofile = Number(/\nLimitNOFILE=(\d+)\n/.exec(text)?.[1]);
    t.true(nofile >= 65536, 'LimitNOFILE high enough for thousands of streams');
    t.regex(text, /\nEnvironmentFile=\/etc\/lainlet\/(hub|agent)\.env\n/);
  });
}

test('the agent keeps its state in its StateDirectory', (t) => {
  const text = readFileSync(dir + 'lainlet-agent.service', 'utf8');
  t.regex(text, /\nStateDirectory=lainlet\n/);
  t.regex(text, /-state-dir \$\{STATE_DIRECTORY\}/);
});
