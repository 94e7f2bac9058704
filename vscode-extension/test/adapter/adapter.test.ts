// Adapter tests: VS Code's own DAP test client (DebugClient from
// @vscode/debugadapter-testsupport) drives `kdap dap` on stdio against the
// real test cluster and the Go fixture. The Go e2e test
// TestVSCodeAdapterWithDebugClient creates the pod and runs this with:
// KDAP (binary), KUBECONFIG, NAMESPACE, POD, IMAGE (debugger image),
// LOCAL_ROOT, FILE, LINE (the breakpoint), SERVICE (host:port of the pod's HTTP port).
import { strict as assert } from 'assert';
import { ChildProcess } from 'child_process';
import * as http from 'http';
import { after, before, test } from 'node:test';
import { DebugClient } from '@vscode/debugadapter-testsupport';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through TestVSCodeAdapterWithDebugClient (make e2e)`);
  return v;
};

const get = (path: string): Promise<string> => new Promise((resolve, reject) => {
  http.get(`http://${env('SERVICE')}${path}`, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body.trim()));
  }).on('error', reject);
});

let dc: DebugClient;
let exited = false; // kdap dap on stdio ends by itself after the IDE's disconnect

before(async () => {
  dc = new DebugClient(env('KDAP'), 'dap', 'kdap', {}, true);
  dc.defaultTimeout = 60_000;
  await dc.start();
});

after(async () => {
  if (!exited) {
    await dc.stop(); // DebugClient's stop writes a disconnect: only to a kdap that still runs
  }
});

/** adapterExit waits for the `kdap dap` process DebugClient started to exit, and returns its exit code. */
function adapterExit(within: number): Promise<number | null> {
  const proc = (dc as unknown as { _adapterProcess?: ChildProcess })._adapterProcess;
  if (!proc || proc.exitCode !== null) return Promise.resolve(proc?.exitCode ?? null);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kdap dap still runs ${within} ms after the disconnect`)), within);
    proc.once('exit', (code) => { clearTimeout(timer); resolve(code); });
  });
}

const t0 = Date.now();
const mark = (what: string) => console.error(`adapter test: ${what} after ${Date.now() - t0} ms`);

test('breakpoint hit, stack, variables, continue, disconnect', async () => {
  const file = env('FILE');
  const line = Number(env('LINE'));
  await dc.initializeRequest({ adapterID: 'kdap', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
  const attached = dc.attachRequest({
    target: `pod/${env('POD')}`, namespace: env('NAMESPACE'), kubeconfig: env('KUBECONFIG'),
    image: env('IMAGE'), localRoot: env('LOCAL_ROOT'),
  } as never);
  await dc.waitForEvent('initialized');
  const bps = await dc.setBreakpointsRequest({ source: { path: file }, breakpoints: [{ line }] });
  assert.equal(bps.body.breakpoints[0].verified, true, JSON.stringify(bps.body));
  await dc.configurationDoneRequest();
  await attached;
  mark('attached and configured');

  const reply = get('/hello?name=vscode');
  const stopped = await dc.assertStoppedLocation('breakpoint', { path: file, line });
  const frame = stopped.body.stackFrames[0];
  mark('stopped');
  assert.equal(frame.name, 'main.greeting');

  const scopes = await dc.scopesRequest({ frameId: frame.id });
  const locals = scopes.body.scopes.find((s) => s.name.startsWith('Locals')) ?? scopes.body.scopes[0];
  const vars = await dc.variablesRequest({ variablesReference: locals.variablesReference });
  const name = vars.body.variables.find((v) => v.name === 'name');
  assert.equal(name?.value, '"vscode"', JSON.stringify(vars.body.variables));

  const threads = await dc.threadsRequest();
  await dc.continueRequest({ threadId: threads.body.threads[0].id });
  assert.match(await reply, /^hello, vscode \(request \d+\)$/);
  mark('continued, reply arrived');

  // Disconnect leaves the service running, with no breakpoint armed.
  await dc.disconnectRequest({});
  mark('disconnected');
  assert.equal(await adapterExit(10_000), 0, 'kdap dap exits with 0 after the disconnect');
  exited = true;
  assert.match(await get('/hello?name=after'), /^hello, after/);
});
