// The kdap extension stays thin: kdap does the work (`kdap dap` is the debug
// adapter); the extension finds kdap, completes launch configurations, picks
// a pod when none is named, and traces DAP traffic on request.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as vscode from 'vscode';
import {
  describeMessage, describeTarget, findKdap, KdapConfiguration, namespaces, parseRuntimes, parseTargets, pods,
  resolveConfiguration, RuntimeInfo, Target, targetsArgs, withTarget,
} from './configuration';

let log: vscode.LogOutputChannel;

export function activate(context: vscode.ExtensionContext): void {
  log = vscode.window.createOutputChannel('kdap', { log: true });
  context.subscriptions.push(
    log,
    vscode.debug.registerDebugConfigurationProvider('kdap', new ConfigurationProvider()),
    vscode.debug.registerDebugAdapterDescriptorFactory('kdap', new AdapterFactory()),
    vscode.debug.registerDebugAdapterTrackerFactory('kdap', new TrackerFactory()),
  );
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

async function pickTarget(config: KdapConfiguration, runtimes: RuntimeInfo[]): Promise<Target | undefined> {
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
