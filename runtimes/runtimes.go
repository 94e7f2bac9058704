// Package runtimes is kdap's knowledge of each language runtime, one file
// per runtime: how the agent recognises a target process, which debugger it
// runs, how kdap translates the IDE's attach arguments for that debugger and
// maps source paths. It imports neither Kubernetes nor DAP plumbing, so both
// kdap and the in-pod agent use it.
package runtimes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Runtime is everything kdap and its agent know of one language runtime,
// declared once in that runtime's file (golang.go, python.go, …) and listed
// in All. Nothing outside a runtime's own files names it: the CLI's image
// flags, the attach orchestration, the agent's driver table and the VS Code
// extension's schema all come from this list.
type Runtime struct {
	Name     string // as in the launch configuration's "runtime"
	Title    string // for messages: "Python"
	Debugger string // the debugger kdap runs: "debugpy"
	// Summary says in one line what a target needs to be debugged (kdap
	// runtimes, the launch configuration schema).
	Summary    string
	Extensions []string // source files to look for under localRoot
	Languages  []string // VS Code language ids whose breakpoints the extension enables
	// Hints are words that, found in a container's image name or command,
	// make "runtime": "auto" pick this runtime (see Guess).
	Hints []string
	// EnvHints are environment variables the runtime's official images
	// set (PYTHON_VERSION): found in an image's configuration, they make
	// "auto" pick this runtime when the command names none.
	EnvHints []string
	// Access is what the debugger needs from the pod to reach the target.
	Access Access
	// MappingArgs are the attach arguments, as the debugger names them, that
	// set the source path mapping by hand; any of them present turns the
	// automatic mapping off. The first is the one messages suggest.
	MappingArgs []Arg
	// Inspect recognises a running target (in the agent); an error of type
	// *NotThisRuntimeError means the process belongs to another runtime.
	Inspect func(pid int) (*Target, error)
	// ReadSources, if set, fills the Target's Sources where Inspect leaves
	// them out because reading them takes CPU (Go: ≈ 15 ms from the
	// function table, ≈ 60 ms from the DWARF): the agent runs it while the
	// debugger attaches.
	ReadSources func(t *Target) error
	// AttachArguments turns the IDE's attach arguments into the debugger's:
	// kdap's own keys dropped, the user's debugger options kept, and a path
	// mapping — the user's if given, else one worked out from the target's
	// sources and the files under localRoot (returned when worked out).
	AttachArguments func(user json.RawMessage, t *Target, localRoot string, localFiles []string) (json.RawMessage, *PathMapping, error)
	// ConnectHint tells a client that connects itself to `kdap attach`'s
	// endpoint how to attach to this target.
	ConnectHint func(t *Target) string
	// Endpoint is the protocol `kdap attach`'s endpoint speaks when kdap
	// takes part in it: EndpointJDWP adds the heartbeats JDWP lacks; ""
	// relays bytes.
	Endpoint string
	// Diagnostics are the diagnostics the agent takes of this runtime's
	// targets (kdap dump, heap, profile, core).
	Diagnostics []Diagnostic
	// Unknowns are what a target needs that kdap cannot see before its
	// agent is in the pod, each with how the first attach reports it
	// (kdap doctor lists them).
	Unknowns []Unknown
}

// Unknown is one thing a target needs that kdap cannot check from the API
// server: the node's kernel settings, the program's build, its flags.
type Unknown struct {
	Name   string // short, for a table: "ptrace_scope"
	What   string // what must hold: "the binary has DWARF debug information"
	Report string // what the first attach says when it does not
	// AsTargetUser: it matters only when the debugger runs as the
	// target's user, without SYS_PTRACE.
	AsTargetUser bool
	// Seen, when set, looks for it in the pod spec and the image's
	// configuration: what it found ("" when it cannot tell), and whether
	// that is good.
	Seen func(e Evidence) (found string, ok bool)
}

// ptraceScope is the node setting a ptrace-based debugger without
// SYS_PTRACE depends on.
func ptraceScope(debugger string) Unknown {
	return Unknown{
		Name: "node's ptrace_scope",
		What: "the node's kernel.yama.ptrace_scope is 0: without SYS_PTRACE, " + debugger + " may ptrace a process of its own user only there",
		Report: "the debugger container exits with \"Operation not permitted\", naming SYS_PTRACE and ptrace_scope; " +
			"on such a node a root target (kdap adds SYS_PTRACE) or a node admin's sysctl kernel.yama.ptrace_scope=0 is the way",
		AsTargetUser: true,
	}
}

// Diagnostic is one diagnostic the agent takes of a runtime's targets,
// with what kdap says of it.
type Diagnostic struct {
	Kind string // the agent's name for it: DiagnosticThreads, …
	What string // "goroutine dump"
	Ext  string // the file's extension: ".txt"
	Cost string // what the target goes through meanwhile, said while waiting
}

// Diagnostic returns the runtime's diagnostic of kind, if it takes one.
func (r *Runtime) Diagnostic(kind string) (Diagnostic, bool) {
	for _, d := range r.Diagnostics {
		if d.Kind == kind {
			return d, true
		}
	}
	return Diagnostic{}, false
}

// EndpointJDWP: kdap attach relays JDWP packets and adds its heartbeats.
const EndpointJDWP = "jdwp"

// Diagnostics, by the agent's names for them.
const (
	DiagnosticThreads   = "threads"   // every thread's stack: text, or format=json; locals=true
	DiagnosticHeap      = "heap"      // a heap dump (all=true: unreachable objects too)
	DiagnosticRecording = "recording" // a profiler's recording (duration=30s)
	DiagnosticCore      = "core"      // a core file and the executable, as a tar
)

// WithDiagnostic lists the runtimes whose agent takes the diagnostic kind.
func WithDiagnostic(kind string) []*Runtime {
	var out []*Runtime
	for _, r := range All {
		if _, ok := r.Diagnostic(kind); ok {
			out = append(out, r)
		}
	}
	return out
}

// Access is what a runtime's debugger needs to reach the target process.
type Access int

const (
	// AccessPtrace: the debugger ptraces the target, which needs
	// SYS_PTRACE unless the agent runs as the target's user.
	AccessPtrace Access = iota + 1
	// AccessSignal: a signal from the target's user opens the runtime's
	// own debugger (the agent switches to that user; no capability).
	AccessSignal
	// AccessAttachSocket: the runtime's attach socket, used as the
	// target's user (no capability).
	AccessAttachSocket
)

func (a Access) String() string {
	switch a {
	case AccessPtrace:
		return "ptrace"
	case AccessSignal:
		return "a signal from the target's user"
	case AccessAttachSocket:
		return "the runtime's attach socket"
	}
	return "nothing"
}

// Arg is one attach argument a runtime reads, with its JSON schema for
// the VS Code extension's launch configuration.
type Arg struct {
	Name        string
	Description string
	Schema      map[string]any // "type", "items", …
}

// ImageRepository is where kdap's released debugger images are: each
// runtime's is ImageRepository/kdap-NAME:ImageTag() (images/NAME builds
// it, `make images` pushes them all).
const ImageRepository = "ghcr.io/kdap"

// Version is kdap's release version, set when a release is built
// (-ldflags "-X github.com/kdap/kdap/runtimes.Version=v1.2.3"), so that a
// kdap names the debugger images released with it.
var Version = ""

// ImageTag is the tag of the debugger images of this kdap: its release
// version (Version, or the module version `go install …@v1.2.3` records),
// else "latest" for a build from a checkout.
func ImageTag() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && strings.HasPrefix(info.Main.Version, "v") && !strings.Contains(info.Main.Version, "-0.") {
		return info.Main.Version // not a pseudo-version
	}
	return "latest"
}

// DefaultImage is the runtime's debugger image unless configured.
func (r *Runtime) DefaultImage() string { return r.ImageIn(ImageRepository) }

// ImageIn is the runtime's debugger image of this kdap's version in
// repository (a registry host and path: ghcr.io/kdap, 127.0.0.1:5000/kdap).
func (r *Runtime) ImageIn(repository string) string {
	return fmt.Sprintf("%s/kdap-%s:%s", strings.TrimSuffix(repository, "/"), r.Name, ImageTag())
}

// ImageFlag is the name of kdap's flag that sets the runtime's image.
func (r *Runtime) ImageFlag() string { return "image-" + r.Name }

// ImageEnv is the environment variable that sets the runtime's image.
func (r *Runtime) ImageEnv() string { return "KDAP_IMAGE_" + strings.ToUpper(r.Name) }

// MappingKey is the attach argument messages suggest for mapping paths.
func (r *Runtime) MappingKey() string {
	if len(r.MappingArgs) == 0 {
		return "localRoot"
	}
	return r.MappingArgs[0].Name
}

// ExplicitMapping reports whether the attach arguments map paths by hand.
func (r *Runtime) ExplicitMapping(args json.RawMessage) bool {
	var fields map[string]json.RawMessage
	json.Unmarshal(args, &fields)
	for _, a := range r.MappingArgs {
		if v, ok := fields[a.Name]; ok && string(v) != "null" && string(v) != "[]" && string(v) != `""` {
			return true
		}
	}
	return false
}

// NeedsPtrace reports whether the debugger ptraces the target.
func (r *Runtime) NeedsPtrace() bool { return r.Access == AccessPtrace }

// All lists the runtimes kdap supports, in the order "auto" tries them.
var All = []*Runtime{Go, Python, Node, Java}

// Lookup returns the runtime called name, or nil.
func Lookup(name string) *Runtime {
	for _, r := range All {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Names lists the supported runtimes' names.
func Names() []string {
	var out []string
	for _, r := range All {
		out = append(out, r.Name)
	}
	return out
}

// Evidence is what is known of a container before anything runs in its
// pod: its image reference, the command it runs (the pod's, or its
// image's entrypoint and command) and its image's environment.
type Evidence struct {
	Image   string
	Command []string
	Env     []string // NAME=VALUE, from the image's configuration
}

// hasFlag says whether the command, or an environment variable's value
// (NODE_OPTIONS, JAVA_TOOL_OPTIONS), holds flag.
func hasFlag(e Evidence, flag string) bool {
	for _, w := range e.Command {
		if strings.Contains(w, flag) {
			return true
		}
	}
	for _, kv := range e.Env {
		if _, v, _ := strings.Cut(kv, "="); strings.Contains(v, flag) {
			return true
		}
	}
	return false
}

// Guess picks the runtime for "auto" from the evidence: the first runtime
// with a hint among the command's base names, else among the environment
// variable names its official images set, else among the words of the
// image's repository name; else Go (compiled programs rarely say what they
// were written in). It says which evidence decided. The agent checks the
// process itself and names the runtime to use if this is wrong.
func Guess(e Evidence) (*Runtime, string) {
	var command, env []string
	for _, c := range e.Command {
		command = append(command, strings.ToLower(filepath.Base(c)))
	}
	for _, kv := range e.Env {
		name, _, _ := strings.Cut(kv, "=")
		env = append(env, name)
	}
	repo := e.Image
	if i := strings.LastIndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	image := strings.FieldsFunc(strings.ToLower(repo), func(c rune) bool { return c == '/' || c == '-' || c == '_' || c == '.' })
	hinted := func(words []string, hints func(*Runtime) []string, prefix bool) (*Runtime, string) {
		for _, r := range All {
			for _, w := range words {
				for _, h := range hints(r) {
					if w == h || (prefix && strings.HasPrefix(w, h) && strings.Trim(w[len(h):], "0123456789.") == "") {
						return r, w
					}
				}
			}
		}
		return nil, ""
	}
	if r, w := hinted(command, func(r *Runtime) []string { return r.Hints }, true); r != nil {
		return r, fmt.Sprintf("its command runs %s", w)
	}
	if r, w := hinted(env, func(r *Runtime) []string { return r.EnvHints }, false); r != nil {
		return r, fmt.Sprintf("its image sets %s", w)
	}
	if r, w := hinted(image, func(r *Runtime) []string { return r.Hints }, true); r != nil {
		return r, fmt.Sprintf("its image is named %s", w)
	}
	return Go, "nothing names another runtime"
}

// Detect inspects pid with every runtime and returns the first that
// recognises it.
func Detect(pid int) (*Runtime, *Target, error) {
	var details []string
	for _, r := range All {
		t, err := r.Inspect(pid)
		if err == nil {
			return r, t, nil
		}
		var other *NotThisRuntimeError
		if !errors.As(err, &other) {
			return r, nil, err
		}
		details = append(details, fmt.Sprintf("not %s: %s", r.Name, other.Detail))
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return nil, nil, fmt.Errorf("target process %d (%s) is none of the runtimes kdap debugs (%s): check \"container\" in the launch configuration",
		pid, exe, strings.Join(details, "; "))
}

// Target is what the agent reports about the process it debugs (served as
// JSON by the agent's status endpoint).
type Target struct {
	Runtime string   `json:"runtime"`           // the Runtime's Name
	PID     int      `json:"pid"`               // in the target container's PID namespace
	Exe     string   `json:"exe"`               // /proc/PID/exe
	Version string   `json:"version,omitempty"` // language version, e.g. go1.26.8, 3.11.2
	Module  string   `json:"module,omitempty"`  // main module path (Go)
	Root    string   `json:"root,omitempty"`    // the program's source root in the target (Python: the main script's directory or the working directory)
	Sources []string `json:"sources,omitempty"` // the program's own source files, as recorded at build time (Go) or found under Root (Python)
	UID     int      `json:"uid"`               // the process's user id
	GID     int      `json:"gid"`               // the process's group id
	// Detail says how the debugger reaches the target, when that varies
	// (Java: whether and how JDWP was loaded).
	Detail string `json:"detail,omitempty"`
	// Warnings are problems that will not stop the session but will stop
	// something the user expects (a breakpoint binding); kdap shows them.
	Warnings []string `json:"warnings,omitempty"`
}

// NotThisRuntimeError is a target that is not of the runtime asked for.
type NotThisRuntimeError struct {
	Runtime string
	PID     int
	Exe     string
	Detail  string
}

func (e *NotThisRuntimeError) Error() string {
	title := e.Runtime
	if r := Lookup(e.Runtime); r != nil {
		title = r.Title
	}
	return fmt.Sprintf("target process %d (%s) is not a %s program (%s): check \"container\" in the launch configuration, or set \"runtime\" to the target's language",
		e.PID, e.Exe, title, e.Detail)
}

// ErrNoTarget is returned when no process but the agent and pause is visible.
var ErrNoTarget = errors.New("no target process is visible: the debugger container must be created with targetContainerName set to the target container")

// processIDs reads the real uid and gid of pid from /proc/PID/status.
func ProcessIDs(pid int) (uid, gid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid, _ = strconv.Atoi(f[1])
		}
	}
	return uid, gid
}

// KdapAttachKeys are the attach arguments kdap consumes; all others are
// passed to the debugger untouched (a runtime's MappingArgs are the
// debugger's own, translated by its AttachArguments).
var KdapAttachKeys = []string{
	"target", "namespace", "container", "context", "kubeconfig", "runtime",
	"localRoot", "image", "agentTTL", "token",
	"name", "type", "request", "__configurationTarget", "__sessionId",
}

// passThrough returns the user's attach arguments without kdap's own keys.
func passThrough(user json.RawMessage) (map[string]json.RawMessage, error) {
	args := map[string]json.RawMessage{}
	if len(user) > 0 && string(user) != "null" {
		if err := json.Unmarshal(user, &args); err != nil {
			return nil, fmt.Errorf("attach arguments are not a JSON object: %w", err)
		}
	}
	for _, k := range KdapAttachKeys {
		delete(args, k)
	}
	return args, nil
}

// PathMapping says that local path From corresponds to path To in the target.
type PathMapping struct {
	From string `json:"from"` // prefix in the IDE's file system
	To   string `json:"to"`   // prefix as recorded in the target
}

// MapSources finds the prefix mapping between the IDE's files and the
// target's source paths: for each remote source it looks for the local file
// sharing the longest path suffix (at least the file name and its
// directory), and derives the two prefixes from the best match. ok is false
// when nothing matches.
func MapSources(localRoot string, localFiles, remote []string) (PathMapping, bool) {
	byBase := map[string][]string{}
	for _, f := range localFiles {
		byBase[filepath.Base(f)] = append(byBase[filepath.Base(f)], f)
	}
	best, bestLen := PathMapping{}, 1 // a match needs the file name and its directory
	for _, r := range remote {
		rparts := splitPath(r)
		for _, l := range byBase[filepath.Base(r)] {
			lparts := splitPath(l)
			n := commonSuffix(lparts, rparts)
			if n > bestLen {
				best = PathMapping{
					From: filepath.Join(localRoot, filepath.Join(lparts[:len(lparts)-n]...)),
					To:   strings.TrimSuffix(joinLike(r, rparts[:len(rparts)-n]), "/"),
				}
				bestLen = n
			}
		}
	}
	return best, best.From != ""
}

// splitPath splits a slash path into its non-empty components.
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(filepath.ToSlash(p), "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// joinLike joins parts, keeping a leading slash if orig had one.
func joinLike(orig string, parts []string) string {
	j := strings.Join(parts, "/")
	if strings.HasPrefix(orig, "/") {
		return "/" + j
	}
	return j
}

func commonSuffix(a, b []string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

// LocalSources lists files under root with one of the given extensions,
// relative to root, skipping VCS, dependency and hidden directories and
// stopping after limit files.
func LocalSources(root string, exts []string, limit int) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "vendor" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(p, e) {
				rel, _ := filepath.Rel(root, p)
				out = append(out, rel)
				break
			}
		}
		if len(out) >= limit {
			return filepath.SkipAll
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// mappedLibrary finds a mapped library whose file name starts with prefix
// in /proc/PID/maps text.
func mappedLibrary(maps, prefix string) string {
	for _, line := range strings.Split(maps, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(path.Base(f[5]), prefix) {
			return f[5]
		}
	}
	return ""
}

// scriptSources lists the files with one of exts under dir in the
// target's file system (seen through rootfs = /proc/PID/root), skipping
// hidden directories and those named in skip; paths as the target sees
// them.
func scriptSources(rootfs, dir string, exts, skip []string) []string {
	var out []string
	base := filepath.Join(rootfs, dir)
	filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if p != base && (strings.HasPrefix(name, ".") || slices.Contains(skip, name)) {
				return filepath.SkipDir
			}
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(p, e) {
				rel, _ := filepath.Rel(base, p)
				out = append(out, path.Join(dir, filepath.ToSlash(rel)))
				break
			}
		}
		if len(out) >= maxSources {
			return filepath.SkipAll
		}
		return nil
	})
	return out
}

// SignalsCaught is the SigCgt mask of pid: the signals it handles (bit
// N-1 for signal N). A signal it does not handle may kill it.
func SignalsCaught(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no SigCgt in /proc/%d/status", pid)
}

// environ is the environment variable name of pid ("" if unset).
func environ(pid int, name string) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for _, kv := range strings.Split(string(raw), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
