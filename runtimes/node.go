package runtimes

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Node: the target is a Node.js process; SIGUSR1 from the target's user
// opens its inspector on the pod's loopback (no capability, no ptrace),
// and Microsoft's js-debug — the debugger VS Code itself uses — runs in the
// agent and speaks DAP. js-debug opens a second, child session per target;
// the agent joins the two so that every DAP client sees one session, and
// rewrites source paths between the IDE's folder and the target's files,
// which js-debug reads through /proc/PID/root (source maps included).
var Node = &Runtime{
	Name:       nodeName,
	Title:      "Node.js",
	Debugger:   "js-debug",
	Summary:    "Node.js " + NodeMinVersion + " or later (JavaScript, or TypeScript with source maps), debugged with js-debug through the inspector that SIGUSR1 opens.",
	Extensions: nodeExtensions,
	Languages:  []string{"javascript", "typescript", "javascriptreact", "typescriptreact"},
	Hints:      []string{"node", "nodejs", "npm", "npx", "yarn", "pnpm", "ts-node"},
	EnvHints:   []string{"NODE_VERSION", "YARN_VERSION"},
	Access:     AccessSignal,
	Unknowns: []Unknown{
		{Name: "inspector on SIGUSR1", What: "the process opens its inspector on SIGUSR1 (not started with --disable-sigusr1, installs no SIGUSR1 handler of its own)",
			Report: "the debugger container exits with \"does not handle SIGUSR1\" before any signal is sent (the signal would kill it), naming --inspect",
			Seen: func(e Evidence) (string, bool) {
				if hasFlag(e, "--disable-sigusr1") {
					return "the command or NODE_OPTIONS has --disable-sigusr1: the inspector cannot be opened without a restart", false
				}
				return "", false
			}},
	},
	MappingArgs: []Arg{{Name: "remoteRoot", Description: "Node.js: the folder in the container that localRoot corresponds to; wins over the automatic mapping.",
		Schema: map[string]any{"type": "string"}}},
	Inspect:         InspectNode,
	AttachArguments: NodeAttachArguments,
	ConnectHint: func(t *Target) string {
		return fmt.Sprintf(`DAP (js-debug, one session): attach with "localRoot" set to your folder and "remoteRoot": %q`, t.Root)
	},
	Diagnostics: []Diagnostic{
		{Kind: DiagnosticThreads, What: "JavaScript stack dump", Ext: ".txt", Cost: "the main thread stops at its next JavaScript statement while the stack is read (≈ 1 ms)"},
		{Kind: DiagnosticRecording, What: "CPU profile", Ext: ".cpuprofile", Cost: "V8's sampling profiler runs (a few per cent of CPU)"},
		{Kind: DiagnosticHeap, What: "heap snapshot", Ext: ".heapsnapshot", Cost: "V8 writes its heap (JavaScript waits meanwhile: ≈ 0.5 s for 5 MB)"},
	},
}

const nodeName = "node"

var nodeExtensions = []string{".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx"}

// NodeMinVersion is the oldest Node.js release js-debug debugs here
// (measured: breakpoints, stack, variables and evaluate through kdap).
const NodeMinVersion = "10"

// Settings of the Node.js debugger image, read by the agent's js-debug
// driver; images/node sets them (environment variable, and its value when
// unset).
const (
	NodeBinEnv, NodeBinDefault = "KDAP_NODE", "/kdap/node/bin/node"                 // the Node.js that runs js-debug
	JSDebugEnv, JSDebugDefault = "KDAP_JS_DEBUG", "/kdap/js-debug/vsDebugServer.js" // js-debug's standalone DAP server
)

// DefaultInspectorPort is where SIGUSR1 opens the inspector unless the
// command line says otherwise.
const DefaultInspectorPort = 9229

// sigusr1 is SIGUSR1's bit in /proc/PID/status's SigCgt mask.
const sigusr1 = 1 << (10 - 1)

// InspectNode recognises a running Node.js process, its version, where its
// inspector opens, whether it may be sent SIGUSR1, its source root and the
// script files under it.
func InspectNode(pid int) (*Target, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		uid, _ := ProcessIDs(pid)
		return nil, fmt.Errorf("cannot read the target process %d (%v): the debugger runs as uid %d and the target as uid %d, and Node.js is debugged as the target's user; "+
			"set runAsUser %d for the container (kdap then runs the debugger as that user), or leave runAsUser out (kdap starts it as root and switches to the target's user)",
			pid, err, os.Geteuid(), uid, uid)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	libnode := ""
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		libnode = mappedLibrary(string(maps), "libnode")
	}
	version, ok := nodeVersion(root, exe, libnode)
	if !ok {
		return nil, &NotThisRuntimeError{Runtime: nodeName, PID: pid, Exe: exe, Detail: "no Node.js runtime in the executable or its libraries"}
	}
	t := &Target{Runtime: nodeName, PID: pid, Exe: exe, Version: version}
	t.UID, t.GID = ProcessIDs(pid)
	argv := cmdline(pid)
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	t.Root = NodeSourceRoot(argv, cwd, func(p string) bool {
		_, err := os.Stat(filepath.Join(root, p))
		return err == nil
	})
	if t.Root != "" && t.Root != "/" {
		t.Sources = scriptSources(root, t.Root, nodeExtensions, []string{"node_modules"})
		t.Warnings = SourceMapProblems(root, t.Sources, t.UID, t.GID)
	}
	_, _, open := NodeInspectorAddress(argv, NodeOptions(pid))
	if !NodeVersionSupported(version) {
		return nil, fmt.Errorf("the target runs Node.js %s; js-debug debugs Node.js %s and later: upgrade the service's Node.js", version, NodeMinVersion)
	}
	if mask, err := SignalsCaught(pid); err == nil && mask&sigusr1 == 0 && !open {
		return nil, fmt.Errorf("the target (pid %d, Node.js %s) does not handle SIGUSR1, so it cannot open its inspector without a restart (sending the signal would kill it; it was started with --disable-sigusr1 or installs no handler): "+
			"start it with --inspect=127.0.0.1:%d, or without --disable-sigusr1", pid, version, DefaultInspectorPort)
	}
	return t, nil
}

// cmdline is the argument vector of pid.
func cmdline(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}

// NodeOptions is the NODE_OPTIONS environment variable of pid.
func NodeOptions(pid int) string { return environ(pid, "NODE_OPTIONS") }

var nodeVersionString = regexp.MustCompile(`node\.js/v(\d+\.\d+\.\d+)`)

// nodeVersion reads the Node.js version from the executable or libnode
// (Debian's nodejs): the file exports node_module_register, and its
// read-only data holds "node.js/vX.Y.Z" (what the inspector reports).
func nodeVersion(root, exe, libnode string) (string, bool) {
	for _, file := range []string{libnode, exe} {
		if file == "" {
			continue
		}
		f, err := elf.Open(filepath.Join(root, file))
		if err != nil {
			continue
		}
		syms, _ := f.DynamicSymbols()
		isNode := false
		for _, s := range syms {
			if s.Name == "node_module_register" {
				isNode = true
				break
			}
		}
		if !isNode {
			f.Close()
			continue
		}
		version := ""
		if s := f.Section(".rodata"); s != nil {
			version = findInSection(s.Open(), nodeVersionString)
		}
		f.Close()
		return version, true
	}
	return "", false
}

// findInSection returns the first submatch of re in r, read in chunks
// that overlap so that no match is cut.
func findInSection(r io.Reader, re *regexp.Regexp) string {
	const chunk, overlap = 4 << 20, 64
	buf := make([]byte, 0, chunk+overlap)
	tmp := make([]byte, chunk)
	for {
		n, err := io.ReadFull(r, tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("node.js/v")); i >= 0 {
			if m := re.FindSubmatch(buf[i:min(len(buf), i+40)]); m != nil {
				return string(m[1])
			}
		}
		if err != nil {
			return ""
		}
		if len(buf) > overlap {
			buf = append(buf[:0], buf[len(buf)-overlap:]...)
		}
	}
}

// sourceMappingURL finds a script's source map comment.
var sourceMappingURL = regexp.MustCompile(`//[#@] sourceMappingURL=(\S+)\s*$`)

// maxSourceMapWarnings bounds the warnings about source maps.
const maxSourceMapWarnings = 5

// SourceMapProblems names the source maps the target's scripts point to
// that js-debug, running as the target's user (uid, gid), cannot read: a
// breakpoint in their sources would never bind. rootfs is the target's
// root (/proc/PID/root); inline (data:) maps need no file.
func SourceMapProblems(rootfs string, scripts []string, uid, gid int) []string {
	var out []string
	for _, s := range scripts {
		if !strings.HasSuffix(s, ".js") && !strings.HasSuffix(s, ".mjs") && !strings.HasSuffix(s, ".cjs") {
			continue
		}
		m := sourceMappingURL.FindStringSubmatch(fileTail(filepath.Join(rootfs, s), 512))
		if m == nil || strings.HasPrefix(m[1], "data:") || strings.Contains(m[1], "://") {
			continue
		}
		mapPath := path.Join(path.Dir(s), m[1])
		info, err := os.Stat(filepath.Join(rootfs, mapPath))
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s names the source map %s, which is missing: breakpoints in its sources will not bind; ship the .map files in the image", s, mapPath))
		case !readableBy(info, uid, gid):
			out = append(out, fmt.Sprintf("the source map %s (of %s) is not readable by the target's user %d: breakpoints in its sources will not bind; make it readable (chmod a+r)", mapPath, s, uid))
		}
		if len(out) == maxSourceMapWarnings {
			break
		}
	}
	return out
}

// fileTail is the last n bytes of a file ("" if it cannot be read).
func fileTail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(b)
}

// NodeVersionSupported reports whether version ("24.21.0") is at least
// NodeMinVersion; an unknown version is given the benefit of the doubt.
func NodeVersionSupported(version string) bool {
	major, err := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	if err != nil {
		return true
	}
	floor, _ := strconv.Atoi(NodeMinVersion)
	return major >= floor
}

// nodeValueOptions are the node options whose value is the next argument.
var nodeValueOptions = map[string]bool{
	"-r": true, "--require": true, "--import": true, "--loader": true, "--experimental-loader": true,
	"-C": true, "--conditions": true, "--title": true, "--env-file": true, "--input-type": true,
	"--stack-size": true, "--max-old-space-size": true, "--openssl-config": true, "--icu-data-dir": true,
}

// NodeScript is the main script of a node command line, or "" when there
// is none (node -e, node -p, a REPL).
func NodeScript(argv []string) string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-e" || a == "--eval" || a == "-p" || a == "--print" || a == "-":
			return ""
		case a == "--":
			if i+1 < len(argv) {
				return argv[i+1]
			}
			return ""
		case nodeValueOptions[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}

// NodeSourceRoot is where a Node.js program's own sources are: the
// nearest directory at or above the main script that holds package.json
// (for a script under node_modules, e.g. a CLI that starts the app, the
// directory holding node_modules); else the script's directory; else the
// working directory. exists tells whether a path exists in the target.
func NodeSourceRoot(argv []string, cwd string, exists func(string) bool) string {
	script := NodeScript(argv)
	if script == "" {
		return cwd
	}
	if !path.IsAbs(script) {
		script = path.Join(cwd, script)
	}
	dir := path.Dir(script)
	if i := strings.Index(dir+"/", "/node_modules/"); i >= 0 {
		if i == 0 {
			return cwd
		}
		return dir[:i]
	}
	for d := dir; ; d = path.Dir(d) {
		if exists(path.Join(d, "package.json")) {
			return d
		}
		if d == "/" || d == "." {
			break
		}
	}
	return dir
}

// NodeInspectorAddress is where the target's inspector listens, or will
// listen once SIGUSR1 opens it: --inspect[-brk|-port]=[HOST:]PORT in the
// command line or NODE_OPTIONS, else 127.0.0.1:9229. open says the command
// line already asked for it (--inspect, --inspect-brk).
func NodeInspectorAddress(argv []string, nodeOptions string) (host string, port int, open bool) {
	host, port = "127.0.0.1", DefaultInspectorPort
	args := append(strings.Fields(nodeOptions), argv[min(1, len(argv)):]...)
	if s := NodeScript(append([]string{"node"}, argv[min(1, len(argv)):]...)); s != "" {
		// Options after the script belong to the program.
		for i, a := range args {
			if a == s {
				args = args[:i]
				break
			}
		}
	}
	for _, a := range args {
		name, value, _ := strings.Cut(a, "=")
		switch name {
		case "--inspect", "--inspect-brk", "--inspect-wait":
			open = true
		case "--inspect-port", "--debug-port":
		default:
			continue
		}
		if value == "" {
			continue
		}
		h, p, err := splitHostPort(value)
		if err == nil {
			port = p
			if h != "" {
				host = h
			}
		}
	}
	return host, port, open
}

func splitHostPort(v string) (string, int, error) {
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		p, err := strconv.Atoi(v[i+1:])
		return strings.Trim(v[:i], "[]"), p, err
	}
	p, err := strconv.Atoi(v)
	return "", p, err
}

// NodeAttachArguments turns the IDE's attach arguments into what the
// agent's js-debug driver reads: the user's js-debug options passed
// through, and localRoot (the IDE's folder) with remoteRoot (the same
// folder in the container) — the user's remoteRoot if given, else where
// the matching files are, else the target's source root.
func NodeAttachArguments(user json.RawMessage, t *Target, localRoot string, localFiles []string) (json.RawMessage, *PathMapping, error) {
	args, err := passThrough(user)
	if err != nil {
		return nil, nil, err
	}
	var explicit struct {
		RemoteRoot string `json:"remoteRoot"`
	}
	json.Unmarshal(user, &explicit)
	var mapping *PathMapping
	switch {
	case explicit.RemoteRoot != "":
		if localRoot != "" {
			args["localRoot"], _ = json.Marshal(localRoot)
		}
	case localRoot != "" && t != nil:
		m, ok := MapSources(localRoot, localFiles, t.Sources)
		if !ok {
			if t.Root == "" {
				break
			}
			m = PathMapping{From: localRoot, To: t.Root}
		}
		mapping = &m
		args["localRoot"], _ = json.Marshal(m.From)
		args["remoteRoot"], _ = json.Marshal(m.To)
	case t != nil && t.Root != "":
		args["remoteRoot"], _ = json.Marshal(t.Root)
	}
	out, err := json.Marshal(args)
	return out, mapping, err
}
