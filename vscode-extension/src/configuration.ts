// Pure logic of the extension (no vscode import): resolving a launch
// configuration, finding kdap, and turning `kdap targets -o json` into the
// choices of the pod picker. Unit-tested without VS Code.
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
  runtime?: 'auto' | 'go' | 'python';
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

/** What resolving a configuration needs from VS Code. */
export interface ResolveContext {
  workspaceFolder?: string; // the folder the configuration belongs to
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
  if (c.runtime !== undefined && !['auto', 'go', 'python'].includes(c.runtime)) {
    return { kind: 'error', message: `"runtime": "${c.runtime}" is not one kdap debugs: use "auto", "go" or "python"` };
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
    c.runtime = t.runtime as KdapConfiguration['runtime'];
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

/** describeTarget is a container's line in the picker. */
export function describeTarget(t: Target): string {
  const title: Record<string, string> = { go: 'Go', python: 'Python' };
  return `${title[t.runtime] ?? t.runtime} · ${t.image}${t.default ? ' · default' : ''}`;
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
