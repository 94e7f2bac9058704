// Pure logic of the extension (no vscode import): resolving a launch
// configuration, finding kdap, and turning `kdap targets -o json` into the
// choices of the pod picker. It knows no runtime by name: kdap lists them
// (`kdap runtimes -o json`). Unit-tested without VS Code.
import * as path from 'path';

/** The attach arguments kdap reads (kdap's attach.Args); others pass through to the debugger. */
export interface KdapConfiguration {
  type: string;
  request: string;
  name: string;
  target?: string;
  namespace?: string;
  container?: string;
  context?: string;
  kubeconfig?: string;
  runtime?: string; // 'auto' or the name of one of kdap's runtimes
  localRoot?: string;
  [key: string]: unknown;
}

/** One line of `kdap targets -o json`. */
export interface Target {
  namespace: string;
  pod: string;
  container: string;
  image: string;
  runtime: string;
  default: boolean;
}

/** One line of `kdap runtimes -o json`. */
export interface RuntimeInfo {
  name: string;
  title: string;
  debugger: string;
  summary: string;
  diagnostics?: DiagnosticInfo[];
}

/** A diagnostic kdap takes of a runtime's targets, from `kdap runtimes -o json`. */
export interface DiagnosticInfo {
  kind: string;
  command: string; // the kdap command: dump, heap, profile, core
  what: string;
  ext: string;
  cost: string;
}

/** What resolving a configuration needs from VS Code and kdap. */
export interface ResolveContext {
  workspaceFolder?: string; // the folder the configuration belongs to
  runtimes?: RuntimeInfo[]; // the runtimes kdap debugs; unknown: kdap checks "runtime" itself
}

/** The outcome: a configuration to start, or that the user must pick a target first. */
export type Resolution =
  | { kind: 'ready'; config: KdapConfiguration }
  | { kind: 'pick'; config: KdapConfiguration }
  | { kind: 'error'; message: string };

/**
 * resolveConfiguration fills what a user may leave out: an empty
 * configuration (F5 with no launch.json) becomes an attach with the pod
 * picker; localRoot defaults to the workspace folder; a missing target
 * asks for the picker.
 */
export function resolveConfiguration(config: Partial<KdapConfiguration>, ctx: ResolveContext): Resolution {
  const c: KdapConfiguration = { ...config, type: 'kdap', request: config.request ?? 'attach', name: config.name ?? 'kdap: attach' };
  if (c.request !== 'attach') {
    return { kind: 'error', message: `kdap only attaches to running processes: set "request": "attach" (was "${c.request}")` };
  }
  if (!c.localRoot && ctx.workspaceFolder) {
    c.localRoot = ctx.workspaceFolder;
  }
  const names = ctx.runtimes?.map((r) => r.name);
  if (c.runtime !== undefined && names && c.runtime !== 'auto' && !names.includes(c.runtime)) {
    const choices = ['auto', ...names].map((n) => `"${n}"`);
    return { kind: 'error', message: `"runtime": "${c.runtime}" is not one kdap debugs: use ${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}` };
  }
  if (!c.target || c.target.trim() === '') {
    return { kind: 'pick', config: c };
  }
  return { kind: 'ready', config: c };
}

/** withTarget completes a configuration with the picked container. */
export function withTarget(config: KdapConfiguration, t: Target): KdapConfiguration {
  const c: KdapConfiguration = { ...config, target: `pod/${t.pod}`, namespace: t.namespace, container: t.container };
  if (!c.runtime || c.runtime === 'auto') {
    c.runtime = t.runtime;
  }
  return c;
}

/** namespaces lists the namespaces that have targets, the preferred one first. */
export function namespaces(targets: Target[], preferred?: string): string[] {
  const all = [...new Set(targets.map((t) => t.namespace))].sort();
  if (preferred && all.includes(preferred)) {
    return [preferred, ...all.filter((n) => n !== preferred)];
  }
  return all;
}

/** pods lists the pods of a namespace, each with its containers. */
export function pods(targets: Target[], namespace: string): { pod: string; containers: Target[] }[] {
  const byPod = new Map<string, Target[]>();
  for (const t of targets.filter((t) => t.namespace === namespace)) {
    byPod.set(t.pod, [...(byPod.get(t.pod) ?? []), t]);
  }
  return [...byPod.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([pod, containers]) => ({
    pod,
    containers: containers.sort((a, b) => Number(b.default) - Number(a.default) || a.container.localeCompare(b.container)),
  }));
}

/** describeTarget is a container's line in the picker, with its runtime's title when kdap gave the list. */
export function describeTarget(t: Target, runtimes: RuntimeInfo[] = []): string {
  const title = runtimes.find((r) => r.name === t.runtime)?.title ?? t.runtime;
  return `${title} · ${t.image}${t.default ? ' · default' : ''}`;
}

/** parseRuntimes reads `kdap runtimes -o json`. */
export function parseRuntimes(stdout: string): RuntimeInfo[] {
  const v = JSON.parse(stdout);
  if (!Array.isArray(v) || !v.every((r) => typeof r?.name === 'string' && typeof r?.title === 'string')) {
    throw new Error('kdap runtimes -o json did not print a list of runtimes');
  }
  return v as RuntimeInfo[];
}

/** targetsArgs is the `kdap targets` command line for a configuration's cluster. */
export function targetsArgs(config: Partial<KdapConfiguration>): string[] {
  const args = ['targets', '-A', '-o', 'json'];
  if (config.kubeconfig) args.push('--kubeconfig', config.kubeconfig);
  if (config.context) args.push('--context', config.context);
  return args;
}

/** parseTargets reads `kdap targets -o json`. */
export function parseTargets(stdout: string): Target[] {
  const v = JSON.parse(stdout);
  if (!Array.isArray(v)) {
    throw new Error('kdap targets -o json did not print a list');
  }
  return v as Target[];
}

/** The command that installs kdap, for the message shown when it is missing. */
export const installCommand = 'go install github.com/kdap/kdap/cmd/kdap@latest';

/**
 * findKdap returns the kdap binary: the kdap.path setting if set (it must
 * exist), else `kdap` on PATH. exists tells whether a file is executable.
 */
export function findKdap(setting: string | undefined, envPath: string | undefined, exists: (file: string) => boolean): { path?: string; error?: string } {
  if (setting && setting.trim() !== '') {
    return exists(setting)
      ? { path: setting }
      : { error: `kdap.path is set to ${setting}, which is not an executable file: fix the setting, or install kdap with \`${installCommand}\`` };
  }
  for (const dir of (envPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'kdap');
    if (exists(candidate)) return { path: candidate };
  }
  return { error: `kdap is not on PATH: install it with \`${installCommand}\` (and make sure $(go env GOPATH)/bin is on PATH), or set kdap.path` };
}

/** describeMessage is one DAP message for the trace channel. */
export function describeMessage(direction: '→' | '←', m: { type?: string; command?: string; event?: string; seq?: number }): string {
  const what = m.type === 'event' ? `event ${m.event}` : `${m.type} ${m.command}`;
  return `${direction} ${what} (seq ${m.seq}) ${JSON.stringify(m)}`;
}

/** The diagnostics kdap takes of the target's runtime; all kinds, by command, if kdap guessed no runtime. */
export function diagnosticsFor(target: Target, runtimes: RuntimeInfo[]): DiagnosticInfo[] {
  const rt = runtimes.find((r) => r.name === target.runtime);
  if (rt?.diagnostics) return rt.diagnostics;
  const seen = new Map<string, DiagnosticInfo>();
  for (const r of runtimes) for (const d of r.diagnostics ?? []) if (!seen.has(d.command)) seen.set(d.command, d);
  return [...seen.values()];
}

/** The kdap command line that takes diagnostic d of target into dir (profile: for seconds). */
export function diagnoseArgs(d: DiagnosticInfo, target: Target, config: Partial<KdapConfiguration>, dir: string, seconds?: number): string[] {
  const args = [d.command, `pod/${target.pod}`, '-n', target.namespace, '-c', target.container];
  if (target.runtime) args.push('--runtime', target.runtime);
  if (d.command === 'profile') args.push('--duration', `${seconds ?? 30}s`);
  if (config.kubeconfig) args.push('--kubeconfig', config.kubeconfig);
  if (config.context) args.push('--context', config.context);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  args.push('-o', `${dir}/${target.pod}-${d.kind}-${stamp}${d.ext}`);
  return args;
}

/** The files a kdap diagnostic command said it saved: the file (or core directory), then a flame graph if any. */
export function savedFiles(stdout: string): string[] {
  const files: string[] = [];
  const saved = /saved to (.+?) \([\d.]+ (?:B|KB|MB|GB) in /.exec(stdout); // paths may hold spaces
  if (saved) files.push(saved[1]);
  const flame = /flame graph: (.+)$/m.exec(stdout);
  if (flame) files.push(flame[1].trim());
  return files;
}
