package runtimes

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPythonSourceRoot(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"python3", "/app/server.py"}, "/app"},
		{[]string{"python3", "-u", "-X", "dev", "server.py"}, "/srv/app"},
		{[]string{"python3", "-Xdev", "-OO", "sub/main.py", "--port", "80"}, "/srv/app/sub"},
		{[]string{"python3", "-W", "ignore", "-m", "shop.web"}, "/srv/app"},
		{[]string{"python3", "-um", "shop.web"}, "/srv/app"},
		{[]string{"python3", "-c", "import shop; shop.run()"}, "/srv/app"},
		{[]string{"/usr/bin/python3", "/usr/local/bin/gunicorn", "shop.wsgi:app"}, "/srv/app"},
		{[]string{"python3"}, "/srv/app"},
	} {
		if got := PythonSourceRoot(tc.argv, "/srv/app"); got != tc.want {
			t.Errorf("PythonSourceRoot(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestPythonAttachArguments(t *testing.T) {
	target := &Target{Runtime: "python", Root: "/app", Sources: []string{"/app/server.py", "/app/shop/pricing.py"}}
	for _, tc := range []struct {
		name       string
		user       string
		localFiles []string
		want       map[string]any
	}{
		{"mapping from matching files, kdap keys dropped, debugpy options kept",
			`{"target":"pod/web","runtime":"python","localRoot":"/home/me/svc","justMyCode":false}`,
			[]string{"server.py", "shop/pricing.py"},
			map[string]any{"justMyCode": false, "pathMappings": []any{map[string]any{"localRoot": "/home/me/svc", "remoteRoot": "/app"}}}},
		{"local tree one level up",
			`{"target":"web","localRoot":"/home/me/mono"}`,
			[]string{"svc/server.py", "svc/shop/pricing.py"},
			map[string]any{"pathMappings": []any{map[string]any{"localRoot": "/home/me/mono/svc", "remoteRoot": "/app"}}}},
		{"nothing matches: localRoot is the source root",
			`{"target":"web","localRoot":"/home/me/other"}`,
			[]string{"x.py"},
			map[string]any{"pathMappings": []any{map[string]any{"localRoot": "/home/me/other", "remoteRoot": "/app"}}}},
		{"explicit pathMappings win",
			`{"target":"web","localRoot":"/home/me/svc","pathMappings":[{"localRoot":"/a","remoteRoot":"/b"}]}`,
			[]string{"server.py"},
			map[string]any{"pathMappings": []any{map[string]any{"localRoot": "/a", "remoteRoot": "/b"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a struct {
				LocalRoot string `json:"localRoot"`
			}
			json.Unmarshal([]byte(tc.user), &a)
			raw, _, err := PythonAttachArguments(json.RawMessage(tc.user), target, a.LocalRoot, tc.localFiles)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			json.Unmarshal(raw, &got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("attach arguments (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDebugpyInjectCode decodes the byte list back: a program that imports
// debugpy's attach script from the package directory, listens on the port
// and writes a failure to the error file; the statement itself has no
// quotes (they would end gdb's string literal).
func TestDebugpyInjectCode(t *testing.T) {
	code := DebugpyInjectCode("/tmp/kdap-debugpy-1234", 45678)
	if strings.ContainsAny(code, "\"'\n\r\\") {
		t.Fatalf("code contains a quote, backslash or newline: %s", code)
	}
	m := regexp.MustCompile(`^exec\(bytes\(\[([0-9,]+)\]\)\.decode\(\), \{\}\)$`).FindStringSubmatch(code)
	if m == nil {
		t.Fatalf("code is not exec(bytes([...]).decode(), {}): %s", code)
	}
	var b []byte
	for _, n := range strings.Split(m[1], ",") {
		v, _ := strconv.Atoi(n)
		b = append(b, byte(v))
	}
	program := string(b)
	for _, want := range []string{
		`sys.path.insert(0, "/tmp/kdap-debugpy-1234/debugpy/server")`,
		`\"address\":[\"127.0.0.1\",45678]`,
		`\"mode\":\"listen\"`,
		`open("/tmp/kdap-debugpy-1234/inject-45678.err", "w")`,
	} {
		if !strings.Contains(program, want) {
			t.Errorf("injected program lacks %s:\n%s", want, program)
		}
	}
	if py, err := exec.LookPath("python3"); err == nil { // it must at least compile
		if out, err := exec.Command(py, "-c", "import sys; compile(sys.argv[1], 'inject', 'exec')", program).CombinedOutput(); err != nil {
			t.Errorf("the injected program does not compile: %v\n%s", err, out)
		}
	}
	if cmd := GDBInjectCommand("gdb", 42, "/s"); !contains(cmd, "set sysroot /proc/42/root") {
		t.Errorf("gdb command %q", cmd)
	}
	script := GDBInjectScript("/tmp/kdap-debugpy-1234", code)
	for _, want := range []string{
		`set $kdap_so = (void*)dlopen("/tmp/kdap-debugpy-1234/` + DebugpyAttachSO + `", 2)`,
		`call (void*)dlopen("/tmp/kdap-debugpy-1234/lib/libstdc++.so.6", 2)`,
		`call (int)DoAttach(0, "` + code + `", 0)`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("gdb script lacks %s:\n%s", want, script)
		}
	}
}

func TestParseDebugpyAdapter(t *testing.T) {
	got, ok := ParseDebugpyAdapter([]string{"/usr/bin/python3", "/tmp/kdap-debugpy-1/debugpy/adapter", "--for-server", "40001", "--host", "127.0.0.1", "--port", "45678", "--server-access-token", "x"})
	want := DebugpyAdapter{Package: "/tmp/kdap-debugpy-1/debugpy", Host: "127.0.0.1", Port: 45678}
	if !ok || got != want {
		t.Errorf("ParseDebugpyAdapter = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := ParseDebugpyAdapter([]string{"/usr/bin/python3", "/app/server.py", "--port", "80"}); ok {
		t.Error("a program with --port was taken for the adapter")
	}
}

func TestPythonVersionSupported(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"3.11.2", true}, {"3.7", true}, {"3.12.1", false}, {"3.6.15", false}, {"2.7.18", false}} {
		got, err := PythonVersionSupported(tc.v, "3.7-3.11")
		if err != nil || got != tc.want {
			t.Errorf("PythonVersionSupported(%q) = %v, %v; want %v", tc.v, got, err, tc.want)
		}
	}
	if _, err := PythonVersionSupported("3.11", "3.7"); err == nil {
		t.Error("a range without MAX was accepted")
	}
}

func TestGuess(t *testing.T) {
	for _, tc := range []struct {
		e          Evidence
		want, says string
	}{
		{Evidence{Image: "python:3.11-slim"}, "python", "its image is named python"},
		{Evidence{Image: "registry.example.com/shop/web:1.2", Command: []string{"/usr/bin/python3.11", "/app/server.py"}}, "python", "its command runs python3.11"},
		{Evidence{Image: "example.com/api@sha256:abc", Command: []string{"gunicorn", "app:app"}}, "python", "its command runs gunicorn"},
		{Evidence{Image: "kdap.test/pyhttp:e2e"}, "go", "nothing names another runtime"}, // "pyhttp" is not a hint word: the agent will say
		{Evidence{Image: "gcr.io/distroless/static", Command: []string{"/server"}}, "go", "nothing names another runtime"},
		{Evidence{Image: "registry:5000/typo:1"}, "go", "nothing names another runtime"},
		// The command decides before the image's name, the environment
		// before the name too.
		{Evidence{Image: "shop/go-gateway:1", Command: []string{"node", "server.js"}}, "node", "its command runs node"},
		{Evidence{Image: "shop/api:1", Command: []string{"/app/run"}, Env: []string{"PATH=/usr/bin", "JAVA_HOME=/opt/java"}}, "java", "its image sets JAVA_HOME"},
		{Evidence{Image: "shop/go-api:1", Env: []string{"PYTHON_VERSION=3.12.1"}}, "python", "its image sets PYTHON_VERSION"},
	} {
		got, says := Guess(tc.e)
		if got.Name != tc.want || says != tc.says {
			t.Errorf("Guess(%+v) = %s (%s), want %s (%s)", tc.e, got.Name, says, tc.want, tc.says)
		}
	}
}

// TestInspectPython runs a real interpreter on a script in a temporary
// directory; python3 comes from .ci/run.
func TestInspectPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "shop", "__pycache__"), 0o755)
	os.WriteFile(filepath.Join(dir, "shop", "pricing.py"), []byte("X = 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "shop", "__pycache__", "cached.py"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "main.py"), []byte("import sys, time\nsys.stdout.write('up\\n'); sys.stdout.flush()\ntime.sleep(60)\n"), 0o644)
	cmd := exec.Command(py, "-u", filepath.Join(dir, "main.py"))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 3)
	out.Read(buf) // wait until the interpreter runs the script

	got, err := InspectPython(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: Python %s", got.Exe, got.Version)
	if got.Runtime != "python" || got.Root != dir || !regexp.MustCompile(`^3\.\d+`).MatchString(got.Version) || got.UID != os.Getuid() {
		t.Errorf("InspectPython = %+v", got)
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "main.py"), filepath.Join(dir, "shop/pricing.py")}, got.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	r, _, err := Detect(cmd.Process.Pid)
	if err != nil || r != Python {
		t.Errorf("Detect = %v, %v; want python", r, err)
	}

	sleep := exec.Command("sleep", "30")
	sleep.Start()
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(sleep.Process.Pid) + "/exe"); strings.HasSuffix(exe, "/sleep") {
			break // exec'd: no longer a copy of this test binary
		}
	}
	_, err = InspectPython(sleep.Process.Pid)
	var notPy *NotThisRuntimeError
	if !errors.As(err, &notPy) || !strings.Contains(err.Error(), "is not a Python program") {
		t.Errorf("InspectPython(sleep) = %v, want a *NotThisRuntimeError", err)
	}
	if _, _, err := Detect(sleep.Process.Pid); err == nil || !strings.Contains(err.Error(), "none of the runtimes kdap debugs") {
		t.Errorf("Detect(sleep) = %v", err)
	}
}
