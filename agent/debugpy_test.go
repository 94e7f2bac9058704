package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdap/kdap/runtimes"
)

// TestDebugpyRefusesAnUnsupportedPython: the version check comes before
// anything touches the target.
func TestDebugpyRefusesAnUnsupportedPython(t *testing.T) {
	pkg := t.TempDir()
	os.MkdirAll(filepath.Join(pkg, "debugpy"), 0o755)
	d, err := newDebugpy(Config{Debugpy: pkg, Gdb: "/nonexistent/gdb", Pythons: "3.7-3.11", Log: io.Discard},
		&runtimes.Target{Runtime: "python", PID: os.Getpid(), Version: "3.12.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.ensure(context.Background(), t.Logf)
	for _, want := range []string{"runs Python 3.12.1", "supports Python 3.7-3.11", "build images/python", `set "image"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ensure = %v, want an error containing %q", err, want)
		}
	}
}

// TestInjectionErrorQuotesGdb: gdb's own words reach the user, with the
// fix for the failures kdap recognises.
func TestInjectionErrorQuotesGdb(t *testing.T) {
	for _, tc := range []struct {
		out  string
		err  error
		want []string
	}{
		{"Attaching to process 1\nptrace: Operation not permitted.\n", errors.New("exit status 1"),
			[]string{"SYS_PTRACE", "baseline", "ptrace: Operation not permitted."}},
		{"$1 = 0x0\nkdap: dlopen attach.so failed: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found\n", nil,
			[]string{"glibc 2.34 or later", "GLIBC_2.34' not found"}},
		{"No symbol table is loaded.\n", errors.New("exit status 1"),
			[]string{"gdb could not inject debugpy into pid 7", "No symbol table is loaded."}},
		{"$2 = 0\n", nil, []string{"adapter did not start listening", "$2 = 0"}},
	} {
		got := injectionError(7, tc.out, tc.err).Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("injectionError(%q) = %q, want it to contain %q", tc.out, got, w)
			}
		}
	}
}

func TestCopyTreeAndTreeHash(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "debugpy", "__pycache__"), 0o755)
	os.WriteFile(filepath.Join(src, "debugpy", "__init__.py"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "debugpy", "__pycache__", "a.pyc"), []byte("c"), 0o644)
	h1, err := treeHash(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "stage")
	if err := copyTree(src, dst, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "debugpy", "__init__.py")); err != nil || string(b) != "x" {
		t.Errorf("copied file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "debugpy", "__pycache__")); err == nil {
		t.Error("bytecode caches were copied")
	}
	os.WriteFile(filepath.Join(src, "debugpy", "new.py"), nil, 0o644)
	if h2, _ := treeHash(src); h2 == h1 {
		t.Error("a new file did not change the tree's hash")
	}
}
