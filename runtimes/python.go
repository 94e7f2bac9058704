package runtimes

import (
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Python: the target is a CPython interpreter; the debugger is debugpy,
// injected once per process through gdb (debugpy's own attach-to-PID
// method, run by the agent with the target's root as gdb's sysroot). The
// injected debugpy.listen() starts debugpy's adapter as a child of the
// target; it serves IDE sessions one after another for the life of the
// process. Path mapping uses debugpy's pathMappings.
var Python = &Runtime{
	Name:       pythonName,
	Title:      "Python",
	Debugger:   "debugpy",
	Summary:    "CPython 3.7–3.11, debugged with debugpy injected through gdb.",
	Extensions: []string{".py"},
	Languages:  []string{"python"},
	Hints:      []string{"python", "py", "gunicorn", "uvicorn", "celery", "django", "flask", "fastapi"},
	EnvHints:   []string{"PYTHON_VERSION", "PYTHON_SHA256"},
	Access:     AccessPtrace,
	Unknowns: []Unknown{
		ptraceScope("gdb (which injects debugpy)"),
		{Name: "glibc and /tmp", What: "the target's C library is glibc 2.34 or later and its /tmp is writable and not noexec (debugpy is loaded from there)",
			Report: "the attach fails with \"could not load debugpy's attach library\" or \"cannot copy debugpy into the target's file system\", naming the fix"},
	},
	MappingArgs: []Arg{{Name: "pathMappings", Description: "Python: explicit path mapping, wins over the automatic one.",
		Schema: map[string]any{"type": "array", "items": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"localRoot":  map[string]any{"type": "string", "description": "Folder on this machine."},
				"remoteRoot": map[string]any{"type": "string", "description": "Folder in the container."},
			},
			"required": []any{"localRoot", "remoteRoot"},
		}}}},
	Inspect:         InspectPython,
	AttachArguments: PythonAttachArguments,
	ConnectHint: func(t *Target) string {
		return fmt.Sprintf(`DAP (debugpy): attach with "connect" to this address and "pathMappings" with "remoteRoot": %q`, t.Root)
	},
	Diagnostics: []Diagnostic{
		{Kind: DiagnosticThreads, What: "thread dump", Ext: ".txt", Cost: "gdb stops the target while the interpreter writes the dump (≈ 0.15 s; up to ≈ 1.3 s the first time, while gdb reads the target's libraries)"},
		{Kind: DiagnosticRecording, What: "sampling profile", Ext: ".collapsed", Cost: "a thread in the target samples every thread's stack at 100 Hz (gdb stops the target ≈ 0.1 s to start it)"},
		{Kind: DiagnosticHeap, What: "heap summary", Ext: ".txt", Cost: "gdb stops the target while the interpreter counts the objects its garbage collector tracks (≈ 0.2 s for a small service)"},
	},
}

const pythonName = "python"

// Settings of the Python debugger image, read by the agent's debugpy
// driver; images/python sets them.
// (environment variable, and its value when unset).
const (
	DebugpyDirEnv, DebugpyDirDefault         = "KDAP_DEBUGPY_DIR", "/kdap/python" // directory holding the debugpy package
	DebugpyPythonsEnv, DebugpyPythonsDefault = "KDAP_DEBUGPY_PYTHONS", "3.7-3.11" // CPython versions that debugpy supports
	GDBEnv, GDBDefault                       = "KDAP_GDB", "/usr/bin/gdb"         // gdb, which injects debugpy
)

// InspectPython recognises a running CPython interpreter and works out its
// version, its source root and the .py files under it.
func InspectPython(pid int) (*Target, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("cannot read the target process %d (%v): the debugger container needs to share the target's PID namespace and may need SYS_PTRACE", pid, err)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	libpython := ""
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		libpython = mappedLibrary(string(maps), "libpython")
	}
	version, cpython := pythonVersion(root, exe, libpython)
	if !cpython {
		return nil, &NotThisRuntimeError{Runtime: pythonName, PID: pid, Exe: exe, Detail: "no CPython interpreter in the executable or its libraries"}
	}
	t := &Target{Runtime: pythonName, PID: pid, Exe: exe, Version: version}
	t.UID, t.GID = ProcessIDs(pid)
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		t.Root = PythonSourceRoot(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), cwd)
	}
	if t.Root != "" && t.Root != "/" {
		t.Sources = scriptSources(root, t.Root, []string{".py"}, pythonSkip)
	}
	return t, nil
}

var pythonFileName = regexp.MustCompile(`^(?:lib)?python(\d+)\.(\d+)`)

// pythonVersion reads the interpreter's version: CPython ≥ 3.11 exports
// Py_Version (PY_VERSION_HEX), older ones tell it in the file name
// (python3.9, libpython3.8.so). It is CPython if the executable or libpython
// exports the C API debugpy's injection calls.
func pythonVersion(root, exe, libpython string) (version string, cpython bool) {
	for _, file := range []string{libpython, exe} {
		if file == "" {
			continue
		}
		f, err := elf.Open(filepath.Join(root, file))
		if err != nil {
			continue
		}
		syms, _ := f.DynamicSymbols()
		hasAPI, hex := false, uint32(0)
		for _, s := range syms {
			switch s.Name {
			case "PyRun_SimpleString":
				hasAPI = true
			case "Py_Version":
				hex = readUint32(f, s.Value)
			}
		}
		f.Close()
		if !hasAPI {
			continue
		}
		if hex != 0 {
			return fmt.Sprintf("%d.%d.%d", hex>>24, hex>>16&0xff, hex>>8&0xff), true
		}
		if m := pythonFileName.FindStringSubmatch(path.Base(file)); m != nil {
			return m[1] + "." + m[2], true
		}
		return "", true
	}
	return "", false
}

// readUint32 reads the 4 bytes at virtual address addr of f (0 if absent).
func readUint32(f *elf.File, addr uint64) uint32 {
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOBITS || addr < s.Addr || addr+4 > s.Addr+s.Size {
			continue
		}
		b := make([]byte, 4)
		if _, err := s.ReadAt(b, int64(addr-s.Addr)); err != nil {
			return 0
		}
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// PythonSourceRoot is where a Python program's own sources are, from its
// command line: the main script's directory, else (python -m, -c, a
// console script in a bin directory) the working directory.
func PythonSourceRoot(argv []string, cwd string) string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-":
			return cwd
		case !strings.HasPrefix(a, "-"): // the main script
			script := a
			if !path.IsAbs(script) {
				script = path.Join(cwd, script)
			}
			if dir := path.Dir(script); path.Base(dir) != "bin" {
				return dir
			}
			return cwd // a console script (gunicorn, uvicorn): the app is imported from the working directory
		case a == "--check-hash-based-pycs":
			i++
		case strings.HasPrefix(a, "--"):
		default: // one-letter options, maybe combined: -u, -OO, -Bu, -W arg, -Xdev, -m mod
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'm', 'c':
					return cwd
				case 'W', 'X':
					if j == len(a)-1 {
						i++ // the value is the next argument
					}
					j = len(a)
				}
			}
		}
	}
	return cwd
}

// pythonSkip are the directories below a Python program's root that hold
// no sources of its own.
var pythonSkip = []string{"__pycache__", "site-packages", "dist-packages", "venv", "node_modules", "proc", "sys"}

// PythonPathMapping is one entry of debugpy's pathMappings.
type PythonPathMapping struct {
	LocalRoot  string `json:"localRoot"`
	RemoteRoot string `json:"remoteRoot"`
}

// PythonAttachArguments turns the IDE's attach arguments into debugpy's:
// the user's debugpy options passed through, and pathMappings — the user's
// if given, else localRoot mapped to where the matching files are in the
// target, else to the target's source root.
func PythonAttachArguments(user json.RawMessage, t *Target, localRoot string, localFiles []string) (json.RawMessage, *PathMapping, error) {
	args, err := passThrough(user)
	if err != nil {
		return nil, nil, err
	}
	var explicit struct {
		PathMappings []PythonPathMapping `json:"pathMappings"`
	}
	json.Unmarshal(user, &explicit)
	var mapping *PathMapping
	switch {
	case len(explicit.PathMappings) > 0:
		args["pathMappings"], _ = json.Marshal(explicit.PathMappings)
	case localRoot != "" && t != nil:
		m, ok := MapSources(localRoot, localFiles, t.Sources)
		if !ok {
			if t.Root == "" {
				break
			}
			m = PathMapping{From: localRoot, To: t.Root}
		}
		mapping = &m
		args["pathMappings"], _ = json.Marshal([]PythonPathMapping{{LocalRoot: m.From, RemoteRoot: m.To}})
	}
	out, err := json.Marshal(args)
	return out, mapping, err
}

// DebugpyAttachSO is the injection helper inside the debugpy package.
const DebugpyAttachSO = "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach.so"

// DebugpyInjectCode is the Python statement injected into the target: what
// `python -m debugpy --listen 127.0.0.1:PORT --pid PID` injects — import
// debugpy's attach script from dir (the debugpy package's parent, as the
// target sees it) and call debugpy.listen, which starts the adapter — run
// in a namespace of its own, with a failure's traceback written to
// DebugpyErrorFile(dir, port). gdb passes the statement in a C string: it is
// a byte list, with no quotes.
//
// It then sets TCP_NODELAY on pydevd's connection to the adapter: pydevd
// sends a message's header and body in two writes, and with Nagle on, the
// body waits for the adapter's delayed ACK — ≈ 40 ms on every message the
// target sends (measured with debugpy 1.6.6: each request 44 ms). Where a
// debugpy keeps that socket elsewhere, nothing is set and nothing fails.
func DebugpyInjectCode(dir string, port int) string {
	setup, _ := json.Marshal(map[string]any{
		"mode": "listen", "address": []any{"127.0.0.1", port}, "wait_for_client": false,
		"log_to": nil, "adapter_access_token": nil,
	})
	program := fmt.Sprintf(`import json, sys, traceback
try:
    sys.path.insert(0, %q)
    import attach_pid_injected
    del sys.path[0]
    attach_pid_injected.attach(json.loads(%q))
except BaseException:
    with open(%q, "w") as f:
        traceback.print_exc(file=f)
else:
    try:
        import socket
        sys.modules["pydevd"].get_global_debugger().writer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except Exception:
        pass
`, path.Join(dir, "debugpy", "server"), setup, DebugpyErrorFile(dir, port))
	return PythonExec(program)
}

// PythonExec is a Python expression that runs program, spelt so that it
// survives gdb's and C's quoting: the program's bytes as a list.
func PythonExec(program string) string {
	return "exec(bytes(" + byteList(program) + ").decode(), {})"
}

// DebugpyErrorFile is where the injected code writes why debugpy did not
// start (in the target's file system).
func DebugpyErrorFile(dir string, port int) string {
	return path.Join(dir, fmt.Sprintf("inject-%d.err", port))
}

func byteList(s string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(s); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(s[i])))
	}
	b.WriteByte(']')
	return b.String()
}

// DebugpyLibs are the C++ runtime libraries attach.so needs, which a slim
// target image may lack: the agent's image carries them in a lib directory
// beside the debugpy package, and the injection loads them from there only
// if the target has none of its own.
var DebugpyLibs = []string{"libgcc_s.so.1", "libstdc++.so.6"}

// GDBInjectScript is the gdb script that runs code in the target's
// interpreter through debugpy's attach.so, loaded from dir as the target
// sees it. If attach.so does not load, the C++ runtime from dir/lib is
// loaded first and it is tried again; dlerror() tells gdb's output why.
func GDBInjectScript(dir, code string) string {
	so := path.Join(dir, DebugpyAttachSO)
	var b strings.Builder
	fmt.Fprintf(&b, "set scheduler-locking off\nsharedlibrary libc\\.so\n")
	fmt.Fprintf(&b, "set $kdap_so = (void*)dlopen(\"%s\", 2)\n", so)
	fmt.Fprintf(&b, "if $kdap_so == 0\n  call (char*)dlerror()\n")
	for _, lib := range DebugpyLibs {
		fmt.Fprintf(&b, "  if (void*)dlopen(\"%s\", 2) == 0\n    call (void*)dlopen(\"%s\", 2)\n  end\n", lib, path.Join(dir, "lib", lib))
	}
	fmt.Fprintf(&b, "  set $kdap_so = (void*)dlopen(\"%s\", 2)\nend\n", so)
	fmt.Fprintf(&b, "if $kdap_so == 0\n  printf \"kdap: dlopen attach.so failed: %%s\\n\", (char*)dlerror()\nelse\n")
	fmt.Fprintf(&b, "  sharedlibrary attach\n  call (int)DoAttach(0, \"%s\", 0)\nend\n", code)
	return b.String()
}

// GDBInjectCommand is the gdb command line that attaches to pid and runs
// script (GDBInjectScript): gdb reads the target's binaries through
// /proc/PID/root, since the agent lives in another mount namespace.
func GDBInjectCommand(gdb string, pid int, script string) []string {
	return []string{gdb, "--nx", "--batch", "--pid", strconv.Itoa(pid),
		"-iex", fmt.Sprintf("set sysroot /proc/%d/root", pid),
		"-iex", "set debuginfod enabled off",
		"-iex", "set auto-solib-add off", // read only libc's symbols (dlopen), not every library's
		"-iex", "set unwindonsignal on", // a call interrupted (SIGINT on timeout) is unwound, not left half-done

		"-x", script,
	}
}

// DebugpyAdapter is a running debugpy adapter, from its command line.
type DebugpyAdapter struct {
	Package string // directory of the debugpy package it runs from
	Host    string
	Port    int
}

// ParseDebugpyAdapter recognises the command line debugpy.listen() starts
// the adapter with: PYTHON …/debugpy/adapter --for-server N --host H --port P ….
func ParseDebugpyAdapter(argv []string) (DebugpyAdapter, bool) {
	var a DebugpyAdapter
	if len(argv) < 2 || !strings.HasSuffix(argv[1], "/debugpy/adapter") {
		return a, false
	}
	a.Package = strings.TrimSuffix(argv[1], "/adapter")
	for i := 2; i+1 < len(argv); i++ {
		switch argv[i] {
		case "--host":
			a.Host = argv[i+1]
		case "--port":
			a.Port, _ = strconv.Atoi(argv[i+1])
		}
	}
	return a, a.Port != 0
}

// PythonVersionSupported reports whether version ("3.11.2", "3.9") lies in
// the range "3.7-3.11" (the debugpy of the image supports).
func PythonVersionSupported(version, supported string) (bool, error) {
	lo, hi, ok := strings.Cut(supported, "-")
	if !ok {
		return false, fmt.Errorf("supported Python versions %q: want MIN-MAX, e.g. 3.7-3.11", supported)
	}
	v, err1 := minorVersion(version)
	l, err2 := minorVersion(lo)
	h, err3 := minorVersion(hi)
	if err1 != nil || err2 != nil || err3 != nil {
		return false, fmt.Errorf("comparing Python %q with %q: unreadable version", version, supported)
	}
	return v >= l && v <= h, nil
}

// minorVersion turns "3.11.2" into 3*1000+11.
func minorVersion(v string) (int, error) {
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	if len(parts) < 2 {
		return 0, fmt.Errorf("version %q", v)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, err
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, err
	}
	return major*1000 + minor, nil
}
