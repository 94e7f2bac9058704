// The kdap extension stays thin: kdap does the work (`kdap dap` is the debug
// adapter); the extension finds kdap, completes launch configurations, picks
// a pod when none is named, and traces DAP traffic on request.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  describeMessage, describeTarget, diagnoseArgs, diagnosticsFor, findKdap, KdapConfiguration, namespaces, parseRuntimes, parseTargets, pods,
  resolveConfiguration, RuntimeInfo, savedFiles, Target, targetsArgs, withTarget,
} from './configuration';

let log: vscode.LogOutputChannel;

export function activate(context: vscode.ExtensionContext): void {
  log = vscode.window.createOutputChannel('kdap', { log: true });
  context.subscriptions.push(
    log,
    vscode.debug.registerDebugConfigurationProvider('kdap', new ConfigurationProvider()),
    vscode.debug.registerDebugAdapterDescriptorFactory('kdap', new AdapterFactory()),
    vscode.debug.registerDebugAdapterTrackerFactory('kdap', new TrackerFactory()),
    vscode.commands.registerCommand('kdap.diagnose', diagnose),
  );
}

/**
 * kdap.diagnose: pick a pod, then one of the diagnostics kdap takes of its
 * runtime (stack dump, CPU profile, heap, core dump); kdap takes it into
 * the workspace's .kdap folder (or the temp folder) and the result opens.
 */
async function diagnose(): Promise<void> {
  const runtimes = (await kdapRuntimes()) ?? [];
  const kdap = kdapBinary();
  if (!kdap) return;
  const target = await pickTarget({}, runtimes);
  if (!target) return;
  const picks = diagnosticsFor(target, runtimes).map((d) => ({ label: d.what, description: `kdap ${d.command}`, detail: d.cost, d }));
  if (picks.length === 0) {
    void vscode.window.showErrorMessage(`kdap takes no diagnostics of ${target.runtime || 'this'} programs`);
    return;
  }
  const pick = await vscode.window.showQuickPick(picks, { title: `kdap: diagnostic of ${target.namespace}/${target.pod}`, placeHolder: 'What to take (the target keeps running)' });
  if (!pick) return;
  let seconds: number | undefined;
  if (pick.d.command === 'profile') {
    const v = await vscode.window.showInputBox({ title: 'kdap: record for how many seconds?', value: '30', validateInput: (s) => (/^[1-9]\d*$/.test(s) && Number(s) <= 600 ? undefined : 'seconds, 1 to 600') });
    if (!v) return;
    seconds = Number(v);
  }
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const dir = folder ? path.join(folder, '.kdap') : os.tmpdir();
  fs.mkdirSync(dir, { recursive: true });
  const args = diagnoseArgs(pick.d, target, {}, dir, seconds);
  log.info(`running ${kdap} ${args.join(' ')}`);
  const stdout = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `kdap: taking a ${pick.d.what} of ${target.pod}…`, cancellable: true },
    (_, token) => new Promise<string | undefined>((resolve) => {
      const child = execFile(kdap, args, { timeout: ((seconds ?? 0) + 300) * 1000, maxBuffer: 1 << 20 }, (err, out, errOut) => {
        log.info(errOut.trim());
        if (err) {
          void vscode.window.showErrorMessage(`kdap ${pick.d.command}: ${lastLine(errOut) || err.message}`);
          resolve(undefined);
          return;
        }
        resolve(out);
      });
      token.onCancellationRequested(() => child.kill('SIGINT'));
    }));
  if (!stdout) return;
  log.info(stdout.trim());
  const files = savedFiles(stdout);
  void vscode.window.showInformationMessage(lastLine(stdout.split('\n').find((l) => l.includes('saved to')) ?? stdout));
  for (const f of files) {
    if (!fs.existsSync(f)) {
      log.warn(`kdap said it saved ${f}, which is not there`);
      continue;
    }
    if (fs.statSync(f).isDirectory()) {
      void vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(f));
    } else {
      await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(f));
    }
  }
}

function lastLine(s: string): string {
  const lines = s.trim().split('\n');
  return lines[lines.length - 1].replace(/^kdap: /, '');
}

export function deactivate(): void {}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function kdapBinary(): string | undefined {
  const found = findKdap(vscode.workspace.getConfiguration('kdap').get<string>('path'), process.env.PATH, isExecutable);
  if (found.error) {
    void vscode.window.showErrorMessage(found.error);
  }
  return found.path;
}

/** Runs `kdap dap` on stdio for each session. */
class AdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  createDebugAdapterDescriptor(): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
    const kdap = kdapBinary();
    if (!kdap) {
      return undefined; // the error message says how to install kdap
    }
    log.info(`starting ${kdap} dap`);
    return new vscode.DebugAdapterExecutable(kdap, ['dap']);
  }
}

/** The runtimes kdap debugs (`kdap runtimes -o json`); undefined if kdap cannot say (kdap then checks "runtime" itself). */
function kdapRuntimes(): Promise<RuntimeInfo[] | undefined> {
  const kdap = kdapBinary();
  if (!kdap) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile(kdap, ['runtimes', '-o', 'json'], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) {
        log.warn(`kdap runtimes failed: ${stderr.trim() || err.message}`);
        resolve(undefined);
        return;
      }
      try {
        resolve(parseRuntimes(stdout));
      } catch (e) {
        log.warn((e as Error).message);
        resolve(undefined);
      }
    });
  });
}

/** Fills localRoot and, when target is missing, asks namespace → pod → container. */
class ConfigurationProvider implements vscode.DebugConfigurationProvider {
  async resolveDebugConfiguration(folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): Promise<vscode.DebugConfiguration | undefined> {
    const runtimes = await kdapRuntimes();
    const r = resolveConfiguration(config as Partial<KdapConfiguration>, { workspaceFolder: folder?.uri.fsPath ?? vscode.workspace.workspaceFolders?.[0]?.uri.fsPath, runtimes });
    if (r.kind === 'error') {
      void vscode.window.showErrorMessage(r.message);
      return undefined;
    }
    if (r.kind === 'ready') {
      return r.config;
    }
    const picked = await pickTarget(r.config, runtimes ?? []);
    return picked ? withTarget(r.config, picked) : undefined;
  }
}

async function pickTarget(config: Partial<KdapConfiguration>, runtimes: RuntimeInfo[]): Promise<Target | undefined> {
  const kdap = kdapBinary();
  if (!kdap) return undefined;
  const targets = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'kdap: listing pods…' },
    () => new Promise<Target[] | undefined>((resolve) => {
      execFile(kdap, targetsArgs(config), { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) {
          void vscode.window.showErrorMessage(`kdap targets failed: ${stderr.trim() || err.message}`);
          resolve(undefined);
          return;
        }
        try {
          resolve(parseTargets(stdout));
        } catch (e) {
          void vscode.window.showErrorMessage(`kdap targets: ${(e as Error).message}`);
          resolve(undefined);
        }
      });
    }));
  if (!targets) return undefined;
  if (targets.length === 0) {
    void vscode.window.showErrorMessage('kdap found no Running pods in this cluster: check "kubeconfig"/"context"');
    return undefined;
  }
  const ns = await vscode.window.showQuickPick(namespaces(targets, config.namespace), { title: 'kdap: namespace', placeHolder: 'Namespace of the pod to debug' });
  if (!ns) return undefined;
  const podItems = pods(targets, ns).map((p) => ({ label: p.pod, description: p.containers.map((c) => c.container).join(', '), containers: p.containers }));
  const pod = await vscode.window.showQuickPick(podItems, { title: `kdap: pod in ${ns}`, placeHolder: 'Pod to debug' });
  if (!pod) return undefined;
  if (pod.containers.length === 1) return pod.containers[0];
  const c = await vscode.window.showQuickPick(
    pod.containers.map((t) => ({ label: t.container, description: describeTarget(t, runtimes), target: t })),
    { title: `kdap: container of ${pod.label}`, placeHolder: 'Container whose process to debug' });
  return c?.target;
}

/** Logs DAP traffic to the "kdap" channel when kdap.trace is on. */
class TrackerFactory implements vscode.DebugAdapterTrackerFactory {
  createDebugAdapterTracker(): vscode.ProviderResult<vscode.DebugAdapterTracker> {
    if (!vscode.workspace.getConfiguration('kdap').get<boolean>('trace')) {
      return undefined;
    }
    return {
      onWillReceiveMessage: (m) => log.info(describeMessage('→', m)),
      onDidSendMessage: (m) => log.info(describeMessage('←', m)),
      onError: (e) => log.error(`DAP error: ${e.message}`),
      onExit: (code, signal) => log.info(`kdap dap exited (code ${code}, signal ${signal})`),
    };
  }
}
