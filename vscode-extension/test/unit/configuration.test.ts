// Unit tests of the extension's configuration logic: no VS Code needed.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { test } from 'node:test';
import {
  describeTarget, diagnoseArgs, diagnosticsFor, findKdap, namespaces, parseRuntimes, parseTargets, pods, resolveConfiguration, RuntimeInfo, savedFiles, Target, targetsArgs, withTarget,
} from '../../src/configuration';

// What `kdap runtimes -o json` prints (a subset of the fields).
const runtimes: RuntimeInfo[] = [
  { name: 'go', title: 'Go', debugger: 'Delve', summary: 'A Go binary with DWARF.' },
  { name: 'python', title: 'Python', debugger: 'debugpy', summary: 'CPython.' },
];

const targets: Target[] = [
  { namespace: 'shop', pod: 'orders-7d9', container: 'app', image: 'r/orders:1', runtime: 'go', default: true },
  { namespace: 'shop', pod: 'orders-7d9', container: 'sidecar', image: 'r/proxy:2', runtime: 'go', default: false },
  { namespace: 'shop', pod: 'billing-5f1', container: 'app', image: 'python:3.11-slim', runtime: 'python', default: true },
  { namespace: 'default', pod: 'web', container: 'web', image: 'r/web:3', runtime: 'go', default: true },
];

test('an empty configuration (F5 without launch.json) becomes an attach that picks a pod', () => {
  const r = resolveConfiguration({}, { workspaceFolder: '/home/me/shop' });
  assert.equal(r.kind, 'pick');
  assert.deepEqual(r.kind === 'pick' && r.config, { type: 'kdap', request: 'attach', name: 'kdap: attach', localRoot: '/home/me/shop' });
});

test('localRoot defaults to the workspace folder, an explicit one wins, other keys pass through', () => {
  const r = resolveConfiguration({ type: 'kdap', request: 'attach', name: 'x', target: 'deployment/orders', justMyCode: false }, { workspaceFolder: '/ws' });
  assert.deepEqual(r, { kind: 'ready', config: { type: 'kdap', request: 'attach', name: 'x', target: 'deployment/orders', justMyCode: false, localRoot: '/ws' } });
  const own = resolveConfiguration({ request: 'attach', target: 'web', localRoot: '/src' }, { workspaceFolder: '/ws' });
  assert.equal(own.kind === 'ready' && own.config.localRoot, '/src');
  const noFolder = resolveConfiguration({ request: 'attach', target: 'web' }, {});
  assert.equal(noFolder.kind === 'ready' && noFolder.config.localRoot, undefined);
});

test('launch and unknown runtimes are refused with the fix', () => {
  const launch = resolveConfiguration({ request: 'launch', target: 'web' }, {});
  assert.equal(launch.kind, 'error');
  assert.match(launch.kind === 'error' ? launch.message : '', /set "request": "attach"/);
  const cobol = resolveConfiguration({ request: 'attach', target: 'web', runtime: 'cobol' }, { runtimes });
  assert.match(cobol.kind === 'error' ? cobol.message : '', /use "auto", "go" or "python"/);
  // Without kdap's list the extension does not guess: kdap checks "runtime" itself.
  assert.equal(resolveConfiguration({ request: 'attach', target: 'web', runtime: 'cobol' }, {}).kind, 'ready');
  assert.equal(resolveConfiguration({ request: 'attach', target: 'web', runtime: 'python' }, { runtimes }).kind, 'ready');
});

test('a blank target asks for the picker', () => {
  assert.equal(resolveConfiguration({ request: 'attach', target: '  ' }, {}).kind, 'pick');
});

test('the picked container completes the configuration; an explicit runtime wins', () => {
  const base = { type: 'kdap', request: 'attach', name: 'n', localRoot: '/ws' };
  assert.deepEqual(withTarget({ ...base }, targets[2]), { ...base, target: 'pod/billing-5f1', namespace: 'shop', container: 'app', runtime: 'python' });
  assert.equal(withTarget({ ...base, runtime: 'go' }, targets[2]).runtime, 'go');
});

test('namespaces: sorted, the configured one first', () => {
  assert.deepEqual(namespaces(targets), ['default', 'shop']);
  assert.deepEqual(namespaces(targets, 'shop'), ['shop', 'default']);
  assert.deepEqual(namespaces(targets, 'absent'), ['default', 'shop']);
});

test('pods: grouped by pod, default container first', () => {
  const got = pods(targets, 'shop');
  assert.deepEqual(got.map((p) => p.pod), ['billing-5f1', 'orders-7d9']);
  assert.deepEqual(got[1].containers.map((c) => c.container), ['app', 'sidecar']);
  assert.equal(describeTarget(targets[2], runtimes), 'Python · python:3.11-slim · default');
  assert.equal(describeTarget(targets[2]), 'python · python:3.11-slim · default');
});

test('kdap targets command line and output', () => {
  assert.deepEqual(targetsArgs({ kubeconfig: '/k', context: 'dev' }), ['targets', '-A', '-o', 'json', '--kubeconfig', '/k', '--context', 'dev']);
  assert.deepEqual(parseTargets(JSON.stringify(targets)), targets);
  assert.throws(() => parseTargets('{}'), /did not print a list/);
  assert.deepEqual(parseRuntimes(JSON.stringify(runtimes)), runtimes);
  assert.throws(() => parseRuntimes('[{"name": 1}]'), /did not print a list of runtimes/);
});

test('findKdap: the setting, else PATH, else the install command', () => {
  const files = new Set(['/opt/kdap/kdap', '/usr/local/bin/kdap']);
  const exists = (f: string) => files.has(f);
  assert.deepEqual(findKdap('/opt/kdap/kdap', '/usr/bin', exists), { path: '/opt/kdap/kdap' });
  assert.match(findKdap('/nope/kdap', '/usr/local/bin', exists).error ?? '', /kdap.path is set to \/nope\/kdap.*go install github.com\/kdap\/kdap\/cmd\/kdap@latest/);
  assert.deepEqual(findKdap('', '/usr/bin:/usr/local/bin', exists), { path: '/usr/local/bin/kdap' });
  assert.match(findKdap(undefined, '/usr/bin', exists).error ?? '', /kdap is not on PATH: install it with `go install/);
});

// The package.json schema must offer every attach argument kdap reads
// (attach.Args in Go; the runtimes' own path-mapping arguments and the
// runtime enum are generated from kdap's registry, and a Go test checks
// them), and the snippets must expand to valid configurations.
test('package.json: attach schema covers kdap attach arguments; snippets expand to JSON', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '../../../package.json'), 'utf8'));
  const dbg = pkg.contributes.debuggers[0];
  const props = Object.keys(dbg.configurationAttributes.attach.properties);
  const argsGo = fs.readFileSync(path.join(__dirname, '../../../../attach/args.go'), 'utf8');
  const kdapKeys = [...argsGo.matchAll(/json:"([a-zA-Z]+)"/g)].map((m) => m[1]);
  for (const k of kdapKeys) assert.ok(props.includes(k), `schema lacks kdap's attach argument ${k}`);
  assert.equal(dbg.configurationAttributes.attach.properties.runtime.enum[0], 'auto');
  for (const s of dbg.configurationSnippets) {
    // As VS Code does: stringify, then unquote "^…" strings; placeholders become their defaults.
    const text = JSON.stringify(s.body).replace(/"\^((?:[^"\\]|\\.)*)"/g, (_m: string, raw: string) => JSON.parse(`"${raw}"`))
      .replace(/\$\{\d+:([^}]*)\}/g, '$1').replace(/\$\{\d+\|([^,|]*)[^}]*\}/g, '$1').replace(/\\\$/g, '$');
    const configs = JSON.parse(`[${text}]`);
    for (const c of configs) {
      assert.equal(c.type, 'kdap', s.label);
      assert.equal(c.request, 'attach', s.label);
    }
    if (s.label.includes('two services')) {
      assert.deepEqual(configs.map((c: { name: string }) => c.name), ['kdap: orders', 'kdap: billing']);
    }
  }
});

// What the marketplace shows, and what `vsce package` packs: an icon of
// 128×128 pixels or more, the repository, a category, the README.
test('package.json: marketplace metadata is complete and the icon is packed', () => {
  const root = path.join(__dirname, '../../..');
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  for (const k of ['name', 'displayName', 'description', 'version', 'publisher', 'license', 'icon', 'homepage']) {
    assert.ok(pkg[k], `package.json lacks ${k}`);
  }
  assert.match(pkg.repository?.url ?? '', /^https:\/\/github\.com\//);
  assert.ok(pkg.bugs?.url, 'package.json lacks bugs.url');
  assert.ok(pkg.categories.includes('Debuggers'));
  assert.equal(pkg.scripts.test, 'npm run test:unit');
  const png = fs.readFileSync(path.join(root, pkg.icon));
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
  assert.ok(width >= 128 && height >= 128, `icon is ${width}×${height}`);
  const packed = fs.readFileSync(path.join(root, '.vscodeignore'), 'utf8').split('\n');
  assert.ok(packed.includes(`!${pkg.icon}`), '.vscodeignore leaves the icon out of the .vsix');
});

// What `kdap runtimes -o json` says of diagnostics (a subset).
const withDiagnostics: RuntimeInfo[] = [
  { ...runtimes[0], diagnostics: [
    { kind: 'threads', command: 'dump', what: 'goroutine dump', ext: '.txt', cost: 'stops ≈ 0.1 s' },
    { kind: 'core', command: 'core', what: 'core dump', ext: '', cost: 'stops while written' },
  ] },
  { ...runtimes[1], diagnostics: [
    { kind: 'threads', command: 'dump', what: 'thread dump', ext: '.txt', cost: 'gdb' },
    { kind: 'recording', command: 'profile', what: 'sampling profile', ext: '.collapsed', cost: '100 Hz' },
  ] },
];

test("the diagnostics offered are the target's runtime's; with no runtime guessed, every command once", () => {
  assert.deepEqual(diagnosticsFor(targets[2], withDiagnostics).map((d) => d.what), ['thread dump', 'sampling profile']);
  assert.deepEqual(diagnosticsFor({ ...targets[2], runtime: '' }, withDiagnostics).map((d) => d.command), ['dump', 'core', 'profile']);
});

test('a diagnostic runs the kdap command on the picked container, into the folder, named by pod and kind', () => {
  const args = diagnoseArgs(withDiagnostics[1].diagnostics![1], targets[2], { kubeconfig: '/k', context: 'stg' }, '/ws/.kdap', 10);
  assert.deepEqual(args.slice(0, 14), ['profile', 'pod/billing-5f1', '-n', 'shop', '-c', 'app', '--runtime', 'python', '--duration', '10s', '--kubeconfig', '/k', '--context', 'stg']);
  assert.equal(args[14], '-o');
  assert.match(args[15], /^\/ws\/\.kdap\/billing-5f1-recording-\d{8}T\d{6}\.collapsed$/);
});

test('the files kdap says it saved are opened: the file, then the flame graph', () => {
  const out = 'kdap: CPU profile of pid 1 (go1.26) saved to /ws/.kdap/web-recording.pprof (6.1 KB in 2.1s)\nkdap: flame graph: /ws/.kdap/web-recording.svg\n';
  assert.deepEqual(savedFiles(out), ['/ws/.kdap/web-recording.pprof', '/ws/.kdap/web-recording.svg']);
  assert.deepEqual(savedFiles('nothing'), []);
  const spaced = 'kdap: core dump of pid 1 (go1.26) saved to /Users/me/My Shop/.kdap/web-core-1 (97.0 MB in 1.1s; the target was stopped 57ms)\n';
  assert.deepEqual(savedFiles(spaced), ['/Users/me/My Shop/.kdap/web-core-1']);
});
