package runtimes

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Go: the target is a Go binary with DWARF; the debugger is Delve, run
// headless with --accept-multiclient so DAP and JSON-RPC clients (GoLand)
// share one port; path mapping uses dlv's substitutePath.
var Go = &Runtime{
	Name:       goName,
	Title:      "Go",
	Debugger:   "Delve",
	Summary:    "A Go binary with DWARF, debugged with Delve.",
	Extensions: []string{".go"},
	Languages:  []string{"go"},
	Hints:      []string{"go", "golang"},
	EnvHints:   []string{"GOLANG_VERSION"},
	Access:     AccessPtrace,
	Unknowns: []Unknown{
		ptraceScope("Delve"),
		{Name: "debug information", What: "the binary has DWARF debug information (not built with -ldflags=\"-s -w\", not stripped)",
			Report: "the debugger container exits with \"has no debug information\" and the flags to rebuild with"},
	},
	MappingArgs: []Arg{{Name: "substitutePath", Description: "Go: explicit path mapping, wins over the automatic one.",
		Schema: map[string]any{"type": "array", "items": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"from": map[string]any{"type": "string", "description": "Path prefix on this machine."},
				"to":   map[string]any{"type": "string", "description": "Path prefix as recorded in the binary."},
			},
			"required": []any{"from", "to"},
		}}}},
	Inspect:         InspectGo,
	ReadSources:     ReadGoSources,
	AttachArguments: GoAttachArguments,
	ConnectHint: func(*Target) string {
		return `DAP: attach with "mode": "remote"; GoLand/dlv JSON-RPC: connect to the same address`
	},
	Diagnostics: []Diagnostic{
		{Kind: DiagnosticThreads, What: "goroutine dump", Ext: ".txt", Cost: "the target stops while Delve reads every goroutine's stack (≈ 20 ms for a small service; the first time also ≈ 0.5–0.9 s while Delve attaches)"},
		{Kind: DiagnosticRecording, What: "CPU profile", Ext: ".pprof", Cost: "the kernel samples each thread's stack every 10 ms of its CPU time (perf events: the target does not stop)"},
		{Kind: DiagnosticHeap, What: "heap profile", Ext: ".pprof", Cost: "none: the program's own net/http/pprof handler writes its heap profile, when it serves one"},
		{Kind: DiagnosticCore, What: "core dump", Ext: "", Cost: "the target stops while Delve writes its memory (≈ 60 ms per 100 MB here)"},
	},
}

const goName = "go"

// maxSources bounds the source list the agent reports.
const maxSources = 500

// InspectGo reads what the agent needs from a running Go process: that it is
// Go (its build information), its version and module, and that it has
// debug information — from the ELF's section headers only; ReadGoSources
// lists its sources. The errors say what the user can do.
func InspectGo(pid int) (*Target, error) {
	exePath := fmt.Sprintf("/proc/%d/exe", pid)
	exe, err := os.Readlink(exePath)
	if err != nil {
		return nil, fmt.Errorf("cannot read the target process %d (%v): the debugger container needs to share the target's PID namespace and may need SYS_PTRACE", pid, err)
	}
	info, err := buildinfo.ReadFile(exePath)
	if err != nil {
		return nil, &NotThisRuntimeError{Runtime: goName, PID: pid, Exe: exe, Detail: err.Error()}
	}
	t := &Target{Runtime: goName, PID: pid, Exe: exe, Version: info.GoVersion, Module: info.Main.Path}
	t.UID, t.GID = ProcessIDs(pid)
	f, err := elf.Open(exePath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", exe, err)
	}
	defer f.Close()
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return nil, fmt.Errorf("target %s (pid %d) has no debug information: it was built with -ldflags=\"-s -w\" or stripped; rebuild it without -s -w (and for the best debugging with -gcflags=all=\"-N -l\") to debug it", exe, pid)
	}
	return t, nil
}

// ReadGoSources fills t.Sources with the files of the running process's
// main package and main module: from the binary's function table, else
// from its DWARF line tables.
func ReadGoSources(t *Target) error {
	f, err := elf.Open(fmt.Sprintf("/proc/%d/exe", t.PID))
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.Exe, err)
	}
	defer f.Close()
	if sources, ok := pclnSources(f, t.Module); ok {
		t.Sources = sources
		return nil
	}
	d, err := f.DWARF()
	if err != nil {
		return fmt.Errorf("reading the debug information of %s: %w", t.Exe, err)
	}
	t.Sources = goSources(d, t.Module)
	return nil
}

// pclnSources lists the files of the functions of the main package and
// the main module's packages from the function table Go keeps for its
// runtime (.gopclntab): uncompressed, it is read in ≈ 15 ms where the
// DWARF takes ≈ 60 ms to decompress, CPU that Delve, attaching at the same
// time, needs. ok is false when the binary has no such table.
func pclnSources(f *elf.File, module string) (sources []string, ok bool) {
	table, text := f.Section(".gopclntab"), f.Section(".text")
	if table == nil || text == nil {
		return nil, false
	}
	data, err := table.Data()
	if err != nil {
		return nil, false
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, false
	}
	seen := map[string]bool{}
	for _, fn := range tab.Funcs {
		pkg := fn.PackageName()
		if pkg != "main" && (module == "" || (pkg != module && !strings.HasPrefix(pkg, module+"/"))) {
			continue
		}
		file, _, _ := tab.PCToLine(fn.Entry)
		if strings.HasSuffix(file, ".go") && !seen[file] && len(sources) < maxSources {
			seen[file] = true
			sources = append(sources, file)
		}
	}
	return sources, len(sources) > 0
}

// goSources lists the files of the main package and the main module's
// packages, as recorded in the DWARF line tables.
func goSources(d *dwarf.Data, module string) []string {
	seen := map[string]bool{}
	var out []string
	r := d.Reader()
	for len(out) < maxSources {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		ours := name == "main" || (module != "" && (name == module || strings.HasPrefix(name, module+"/")))
		if ours {
			if lr, err := d.LineReader(e); err == nil && lr != nil {
				for _, f := range lr.Files() {
					if f != nil && strings.HasSuffix(f.Name, ".go") && !seen[f.Name] && len(out) < maxSources {
						seen[f.Name] = true
						out = append(out, f.Name)
					}
				}
			}
		}
		r.SkipChildren()
	}
	return out
}

// DelveCommand is the command line that attaches Delve to pid, serving DAP
// and JSON-RPC on one listen address: "unix:PATH" (a Unix socket; Delve
// 1.27's --listen takes the prefix) or HOST:PORT (0 = any; Delve prints
// the address).
// The target is halted once Delve has attached: the caller resumes it over
// JSON-RPC. Not --continue: measured with Delve 1.27.2, a target started
// that way ran on past a DAP client's breakpoint (stopped event sent, HTTP
// request answered anyway).
func DelveCommand(dlv string, pid int, listen string) []string {
	return []string{dlv, "attach", strconv.Itoa(pid), "--headless", "--listen=" + listen,
		"--api-version=2", "--accept-multiclient"}
}

// DelveEnv turns off Delve's telemetry child process (x/telemetry does not
// start when it believes it is a grandchild of itself).
var DelveEnv = []string{"GO_TELEMETRY_CHILD=2"}

// GoAttachArguments turns the IDE's attach arguments into Delve's: remote
// mode (Delve is already attached), the user's own Delve options passed
// through, and substitutePath — the user's if given, else one worked out
// from the target's sources and the files under localRoot.
func GoAttachArguments(user json.RawMessage, target *Target, localRoot string, localFiles []string) (json.RawMessage, *PathMapping, error) {
	args, err := passThrough(user)
	if err != nil {
		return nil, nil, err
	}
	args["mode"] = json.RawMessage(`"remote"`)
	var explicit struct {
		SubstitutePath []PathMapping `json:"substitutePath"`
	}
	json.Unmarshal(user, &explicit)
	var mapping *PathMapping
	switch {
	case len(explicit.SubstitutePath) > 0:
		args["substitutePath"], _ = json.Marshal(explicit.SubstitutePath)
	case localRoot != "" && target != nil:
		if m, ok := MapSources(localRoot, localFiles, target.Sources); ok && m.From != m.To {
			mapping = &m
			args["substitutePath"], _ = json.Marshal([]PathMapping{m})
		}
	}
	out, err := json.Marshal(args)
	return out, mapping, err
}
