package runtimes

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Java: the target is a HotSpot JVM (OpenJDK, Temurin, Corretto, …)
// started with JDWP loaded — a JVM started without it cannot be given
// breakpoints later (HotSpot grants those capabilities only at start), so
// kdap says exactly which flag to add, and can still take thread dumps,
// heap dumps and JFR recordings of it. The agent opens JDWP through
// HotSpot's attach socket (VM.start_java_debugging) as the JVM's user,
// holds the JDWP connection, and serves DAP through Microsoft's java-debug
// core (a small standalone server in images/java) and raw JDWP (IntelliJ,
// jdb) on the same front door.
var Java = &Runtime{
	Name:       javaName,
	Title:      "Java",
	Debugger:   "java-debug",
	Summary:    "A HotSpot JVM (JDK 11 or later) started with JDWP (-agentlib:jdwp=…); debugged with Microsoft's java-debug (DAP) or any JDWP client (IntelliJ).",
	Extensions: javaExtensions,
	Languages:  []string{"java"},
	Hints:      []string{"java", "jdk", "jre", "openjdk", "temurin", "corretto", "zulu", "jvm", "spring", "tomcat", "jetty", "quarkus", "gradle", "maven"},
	EnvHints:   []string{"JAVA_HOME", "JAVA_VERSION", "JDK_VERSION", "JRE_VERSION"},
	Access:     AccessAttachSocket,
	Unknowns: []Unknown{
		{Name: "JDWP at start", What: "the JVM was started with JDWP (-agentlib:jdwp, e.g. in JAVA_TOOL_OPTIONS): HotSpot grants breakpoints only to a JVM started with it",
			Report: "the attach fails with \"started without JDWP\" and the flag for the JVM's version; kdap dump, heap and profile work without it",
			Seen: func(e Evidence) (string, bool) {
				if hasFlag(e, "-agentlib:jdwp") {
					return "the command or the environment has -agentlib:jdwp", true
				}
				return "", false
			}},
		{Name: "attach mechanism", What: "the JVM's attach mechanism is on (no -XX:+DisableAttachMechanism) and its /tmp is writable",
			Report: "the debugger container exits with \"did not open its attach socket\", naming both"},
	},
	MappingArgs: []Arg{{Name: "sourcePaths", Description: "Java: the folders that hold your package directories (…/src/main/java); win over the ones kdap finds under localRoot.",
		Schema: map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}},
	Inspect:         InspectJava,
	AttachArguments: JavaAttachArguments,
	ConnectHint: func(*Target) string {
		return `JDWP: IntelliJ "Remote JVM Debug" (Attach to remote JVM, socket) or jdb -attach to this address`
	},
	Endpoint: EndpointJDWP,
	Diagnostics: []Diagnostic{
		{Kind: DiagnosticThreads, What: "thread dump", Ext: ".txt", Cost: "the JVM prints its threads' stacks (a pause of milliseconds)"},
		{Kind: DiagnosticHeap, What: "heap dump", Ext: ".hprof", Cost: "the JVM writes its heap (it pauses meanwhile: ≈ 1 s per 300 MB of live objects)"},
		{Kind: DiagnosticRecording, What: "JFR recording", Ext: ".jfr", Cost: "the JVM records (JFR profile settings: ≈ 1–2% overhead)"},
	},
}

const javaName = "java"

var javaExtensions = []string{".java"}

// Settings of the Java debugger image, read by the agent's java-debug
// driver; images/java sets them (environment variable, and its value when
// unset).
const (
	JavaBinEnv, JavaBinDefault         = "KDAP_JAVA", "/kdap/jre/bin/java"          // the Java that runs the debug server
	JavaDebugCPEnv, JavaDebugCPDefault = "KDAP_JAVA_DEBUG_CP", "/kdap/java-debug/*" // its class path
)

// JavaDebugMain is the debug server's main class (images/java/server).
const JavaDebugMain = "kdap.javadebug.Main"

// JDWP is how the target JVM loaded JDWP, from its command line and
// JAVA_TOOL_OPTIONS / JDK_JAVA_OPTIONS / _JAVA_OPTIONS.
type JDWP struct {
	Loaded  bool   // libjdwp.so is mapped
	Options string // the -agentlib:jdwp= options, e.g. transport=dt_socket,server=y,address=127.0.0.1:0,onjcmd=y
	OnJcmd  bool   // waits for the attach command VM.start_java_debugging
	Server  bool   // server=y: JDWP listens (rather than connecting out)
	Address string // address=…, as given
}

// JavaJDWP reads pid's JDWP configuration.
func JavaJDWP(pid int) JDWP {
	var j JDWP
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		j.Loaded = mappedLibrary(string(maps), "libjdwp") != ""
	}
	args := cmdline(pid)
	for _, env := range []string{"JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS"} {
		args = append(args, strings.Fields(environ(pid, env))...)
	}
	for _, a := range args {
		opts, ok := strings.CutPrefix(a, "-agentlib:jdwp=")
		if !ok {
			opts, ok = strings.CutPrefix(a, "-Xrunjdwp:")
		}
		if !ok {
			continue
		}
		j.Options = opts
		for _, kv := range strings.Split(opts, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "onjcmd":
				j.OnJcmd = v == "y"
			case "server":
				j.Server = v == "y"
			case "address":
				j.Address = v
			}
		}
	}
	return j
}

// InspectJava recognises a HotSpot JVM and its version; JDWP is looked at
// when a debugger session starts (JavaJDWP), so that a JVM without it can
// still be diagnosed.
func InspectJava(pid int) (*Target, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		uid, _ := ProcessIDs(pid)
		return nil, fmt.Errorf("cannot read the target process %d (%v): the debugger runs as uid %d and the target as uid %d, and a JVM is debugged as its own user; "+
			"set runAsUser %d for the container, or leave runAsUser out (kdap starts the debugger as root and switches to the target's user)", pid, err, os.Geteuid(), uid, uid)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	libjvm := mappedLibrary(string(maps), "libjvm")
	if libjvm == "" {
		if mappedLibrary(string(maps), "libj9vm") != "" {
			return nil, fmt.Errorf("target process %d (%s) is an OpenJ9 JVM, which kdap does not debug yet: kdap debugs HotSpot JVMs (OpenJDK, Temurin, Corretto, Zulu, …)", pid, exe)
		}
		return nil, &NotThisRuntimeError{Runtime: javaName, PID: pid, Exe: exe, Detail: "no JVM (libjvm.so) in the process"}
	}
	if !isHotSpot(filepath.Join(root, libjvm)) {
		return nil, fmt.Errorf("target process %d (%s) runs a JVM that is not HotSpot (%s): kdap debugs HotSpot JVMs (OpenJDK, Temurin, Corretto, Zulu, …)", pid, exe, libjvm)
	}
	t := &Target{Runtime: javaName, PID: pid, Exe: exe}
	t.UID, t.GID = ProcessIDs(pid)
	home := javaHome(libjvm)
	release := readRelease(filepath.Join(root, home, "release"))
	t.Version = release["JAVA_VERSION"]
	if v := release["IMPLEMENTOR"]; v != "" {
		t.Version += " (" + v + ")"
	}
	t.Root, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	t.Detail = JavaJDWP(pid).String()
	return t, nil
}

// String says how JDWP was loaded, for messages.
func (j JDWP) String() string {
	switch {
	case !j.Loaded:
		return "no JDWP: started without -agentlib:jdwp"
	case !j.Server:
		return "JDWP connecting out to a debugger (server=n)"
	case j.OnJcmd:
		return fmt.Sprintf("JDWP loaded, started by kdap on the first session (onjcmd=y, address=%s)", j.Address)
	}
	return fmt.Sprintf("JDWP listening (address=%s)", j.Address)
}

// isHotSpot reports whether libjvm is HotSpot's (it exports gHotSpotVMStructs).
func isHotSpot(libjvm string) bool {
	f, err := elf.Open(libjvm)
	if err != nil {
		return false
	}
	defer f.Close()
	syms, _ := f.DynamicSymbols()
	for _, s := range syms {
		if s.Name == "gHotSpotVMStructs" {
			return true
		}
	}
	return false
}

// javaHome is the Java home of a libjvm path: HOME/lib/server/libjvm.so.
func javaHome(libjvm string) string {
	return path.Dir(path.Dir(path.Dir(libjvm)))
}

// readRelease reads a Java home's release file (KEY="value" lines).
func readRelease(file string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// JavaMajor is the major version of a JAVA_VERSION ("17.0.15" → 17,
// "1.8.0_392" → 8; 0 if unknown).
func JavaMajor(version string) int {
	parts := strings.SplitN(version, ".", 3)
	n, _ := strconv.Atoi(parts[0])
	if n == 1 && len(parts) > 1 {
		n, _ = strconv.Atoi(parts[1])
	}
	return n
}

// JDWPFlag is the flag that makes a JVM of this major version debuggable
// by kdap: from JDK 11 to 23 JDWP can wait for kdap (onjcmd=y: nothing
// listens until the attach command starts it); JDK 24 removed onjcmd
// (JDK-8336401), so there JDWP listens from the start — on the pod's
// loopback only, reachable by whoever may port-forward.
func JDWPFlag(major int) string {
	flag := "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0"
	if major >= 11 && major < 24 {
		flag += ",onjcmd=y"
	}
	return flag
}

// NoJDWPError is the error for a JVM started without JDWP: what to add,
// for its version, and what works without a restart.
func NoJDWPError(t *Target) error {
	major := JavaMajor(t.Version)
	how := "JDWP waits for kdap (onjcmd=y) and nothing listens before it"
	if major >= 24 {
		how = "JDK 24 and later have no onjcmd: JDWP then listens from the start, on the pod's loopback only, so set it per workload"
	}
	return fmt.Errorf("the JVM (pid %d, Java %s) was started without JDWP, and a running JVM cannot be given breakpoints (HotSpot grants them only at start): "+
		"restart it with %s — e.g. JAVA_TOOL_OPTIONS=%q in the pod spec, or platform-wide in the base image; %s. "+
		"Without a restart, kdap dump, kdap heap and kdap profile take a thread dump, a heap dump and a JFR recording of it",
		t.PID, t.Version, JDWPFlag(major), JDWPFlag(major), how)
}

var javaPackage = regexp.MustCompile(`(?m)^\s*package\s+([\w.]+)\s*;`)

// JavaSourceRoots finds the folders under localRoot that hold package
// directories: for each .java file, its directory minus its package path
// (from the file's package declaration).
func JavaSourceRoots(localRoot string, files []string) []string {
	seen := map[string]bool{}
	for _, rel := range files {
		b := make([]byte, 4096)
		f, err := os.Open(filepath.Join(localRoot, rel))
		if err != nil {
			continue
		}
		n, _ := f.Read(b)
		f.Close()
		dir := filepath.Dir(filepath.Join(localRoot, rel))
		if m := javaPackage.FindSubmatch(b[:n]); m != nil {
			pkg := filepath.FromSlash(strings.ReplaceAll(string(m[1]), ".", "/"))
			if !strings.HasSuffix(dir, string(filepath.Separator)+pkg) {
				continue // not laid out by package
			}
			dir = strings.TrimSuffix(dir, string(filepath.Separator)+pkg)
		}
		seen[dir] = true
	}
	roots := make([]string, 0, len(seen))
	for r := range seen {
		roots = append(roots, r)
	}
	sort.Strings(roots)
	return roots
}

// JavaAttachArguments turns the IDE's attach arguments into the Java debug
// server's (java-debug's attach): the user's java-debug options passed
// through; sourcePaths — the user's if given, else the source roots found
// under localRoot; and kdapSourceFiles, the .java files below each root,
// so that the server names only files the IDE has. The host and port are
// the agent's business.
func JavaAttachArguments(user json.RawMessage, t *Target, localRoot string, localFiles []string) (json.RawMessage, *PathMapping, error) {
	args, err := passThrough(user)
	if err != nil {
		return nil, nil, err
	}
	args["type"] = json.RawMessage(`"java"`)
	args["request"] = json.RawMessage(`"attach"`)
	args["hostName"] = json.RawMessage(`"127.0.0.1"`)
	args["port"] = json.RawMessage(`0`)
	var explicit struct {
		SourcePaths []string `json:"sourcePaths"`
	}
	json.Unmarshal(user, &explicit)
	var mapping *PathMapping
	roots := explicit.SourcePaths
	if len(roots) == 0 && localRoot != "" {
		if roots = JavaSourceRoots(localRoot, localFiles); len(roots) > 0 {
			args["sourcePaths"], _ = json.Marshal(roots)
			mapping = &PathMapping{From: strings.Join(roots, ", "), To: "the JVM's classes, by package"}
		}
	}
	if len(roots) > 0 {
		args["kdapSourceFiles"], _ = json.Marshal(filesUnder(roots, localRoot, localFiles))
	}
	out, err := json.Marshal(args)
	return out, mapping, err
}

// filesUnder lists the .java files below each root (slash-separated,
// relative to it): from localFiles for a root under localRoot, else by
// listing the root.
func filesUnder(roots []string, localRoot string, localFiles []string) map[string][]string {
	out := map[string][]string{}
	for _, root := range roots {
		files := []string{}
		if rel, err := filepath.Rel(localRoot, root); localRoot != "" && err == nil && !strings.HasPrefix(rel, "..") {
			prefix := filepath.ToSlash(rel) + "/"
			if rel == "." {
				prefix = ""
			}
			for _, f := range localFiles {
				if r, ok := strings.CutPrefix(filepath.ToSlash(f), prefix); ok {
					files = append(files, r)
				}
			}
		} else if listed, err := LocalSources(root, javaExtensions, 20000); err == nil {
			for _, f := range listed {
				files = append(files, filepath.ToSlash(f))
			}
		}
		out[root] = files
	}
	return out
}
