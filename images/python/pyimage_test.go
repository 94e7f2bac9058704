package pyimage

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPrecompiledKeepsValidPycsRetimed: only the pycs that match their
// sources come into the image, through followed links, with the source
// timestamp set to the image's (0) and nothing else changed.
func TestPrecompiledKeepsValidPycsRetimed(t *testing.T) {
	dist := t.TempDir()
	when := time.Unix(1676100000, 0)
	source := func(rel, body string) {
		p := filepath.Join(dist, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
		os.Chtimes(p, when, when)
	}
	pyc := func(rel string, mtime int64, size int) []byte {
		b := make([]byte, 20)
		copy(b, "\xa7\x0d\x0d\x0a") // CPython 3.11's magic
		binary.LittleEndian.PutUint32(b[8:], uint32(mtime))
		binary.LittleEndian.PutUint32(b[12:], uint32(size))
		copy(b[16:], "code")
		p := filepath.Join(dist, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
		return b
	}
	source("debugpy/server/api.py", "x = 1\n")
	good := pyc("debugpy/server/__pycache__/api.cpython-311.pyc", when.Unix(), 6)
	pyc("debugpy/server/__pycache__/gone.cpython-311.pyc", when.Unix(), 6) // no source
	source("debugpy/stale.py", "y = 22\n")
	pyc("debugpy/__pycache__/stale.cpython-311.pyc", when.Unix()-5, 7) // compiled from an older source
	source("pydevd/pydevd.py", "z\n")
	pyc("pydevd/__pycache__/pydevd.cpython-311.pyc", when.Unix(), 2)
	os.MkdirAll(filepath.Join(dist, "debugpy/_vendored"), 0o755)
	os.Symlink("../../pydevd", filepath.Join(dist, "debugpy/_vendored/pydevd")) // as Debian links it
	source("six.py", "s\n")
	pyc("__pycache__/six.cpython-311.pyc", when.Unix(), 2) // not a file the image keeps

	files, err := precompiled(dist)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		if got := binary.LittleEndian.Uint32(f.Data[8:]); got != 0 {
			t.Errorf("%s: source time %d in the header, want the image's 0", f.Path, got)
		}
	}
	sort.Strings(paths)
	want := []string{
		DebugpyDir + "/debugpy/_vendored/pydevd/__pycache__/pydevd.cpython-311.pyc",
		DebugpyDir + "/debugpy/server/__pycache__/api.cpython-311.pyc",
	}
	if len(paths) != len(want) || paths[0] != want[0] || paths[1] != want[1] {
		t.Fatalf("precompiled files:\n%q\nwant:\n%q", paths, want)
	}
	for _, f := range files {
		if f.Path == want[1] {
			good[8], good[9], good[10], good[11] = 0, 0, 0, 0
			if string(f.Data) != string(good) {
				t.Errorf("api's pyc changed beyond its source time:\n%x\nwant\n%x", f.Data, good)
			}
		}
	}
}

// TestNamespaceFilesReplaceOnlyTheDeclaration: pydevd's plugin namespaces
// become pkgutil's alone, and a file that is not the pkg_resources
// declaration they replace stops the build.
func TestNamespaceFilesReplaceOnlyTheDeclaration(t *testing.T) {
	dist := t.TempDir()
	debian := "import warnings\nwith warnings.catch_warnings():\n    try:\n        __import__('pkg_resources').declare_namespace(__name__)\n" +
		"    except ImportError:\n        import pkgutil\n        __path__ = pkgutil.extend_path(__path__, __name__)\n"
	for _, rel := range namespaceInits {
		os.MkdirAll(filepath.Dir(filepath.Join(dist, rel)), 0o755)
		os.WriteFile(filepath.Join(dist, rel), []byte(debian), 0o644)
	}
	files, err := namespaceFiles(dist)
	if err != nil || len(files) != len(namespaceInits) {
		t.Fatalf("namespaceFiles: %d files, %v", len(files), err)
	}
	for _, f := range files {
		if string(f.Data) != pkgutilNamespace {
			t.Errorf("%s: %q", f.Path, f.Data)
		}
	}
	if debugpyFiles(namespaceInits[0]) {
		t.Error("the image's tree would also copy Debian's declaration")
	}
	os.WriteFile(filepath.Join(dist, namespaceInits[1]), []byte("x = 1\n"), 0o644)
	if _, err := namespaceFiles(dist); err == nil || !strings.Contains(err.Error(), namespaceInits[1]) {
		t.Errorf("a changed namespace file: %v", err)
	}
}

// TestDockerfileKeepsInStep: the Dockerfile users build pins the same
// debugpy, keeps the times its bytecode is valid for, and writes the same
// plugin namespaces.
func TestDockerfileKeepsInStep(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	want := []string{"python3-debugpy=" + DebugpyVersion, "KDAP_DEBUGPY_PYTHONS=" + Pythons, "KDAP_DEBUGPY_DIR=" + DebugpyDir,
		"--preserve=timestamps", strings.ReplaceAll(pkgutilNamespace, "\n", `\n`)}
	for _, rel := range namespaceInits {
		want = append(want, strings.TrimPrefix(rel, "debugpy/_vendored/pydevd/pydevd_plugins/"))
	}
	for _, w := range want {
		if !strings.Contains(df, w) {
			t.Errorf("images/python/Dockerfile does not say %q", w)
		}
	}
}
