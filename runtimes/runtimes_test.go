package runtimes

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMapSources(t *testing.T) {
	local := []string{"cmd/web/main.go", "internal/db/db.go", "README.md", "other/main.go"}
	for _, tc := range []struct {
		name   string
		remote []string
		want   PathMapping
		ok     bool
	}{
		{"built in another directory", []string{"/build/src/cmd/web/main.go", "/build/src/internal/db/db.go"},
			PathMapping{From: "/home/me/proj", To: "/build/src"}, true},
		{"built with -trimpath: module paths", []string{"example.com/shop/cmd/web/main.go"},
			PathMapping{From: "/home/me/proj", To: "example.com/shop"}, true},
		{"the longest suffix wins", []string{"/b/x/main.go", "/b/cmd/web/main.go"},
			PathMapping{From: "/home/me/proj", To: "/b"}, true},
		{"a file name alone is not enough", []string{"/elsewhere/main.go"}, PathMapping{}, false},
		{"nothing in common", []string{"/b/z/y.go"}, PathMapping{}, false},
		{"local tree is a subdirectory of the build", []string{"/b/mono/svc/cmd/web/main.go"},
			PathMapping{From: "/home/me/proj", To: "/b/mono/svc"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := MapSources("/home/me/proj", local, tc.remote)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (got %+v)", ok, tc.ok, got)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mapping (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGoAttachArguments(t *testing.T) {
	target := &Target{Runtime: "go", Sources: []string{"/build/cmd/web/main.go"}}
	local := []string{"cmd/web/main.go"}
	for _, tc := range []struct {
		name string
		user string
		want map[string]any
	}{
		{"mapping worked out, kdap keys dropped, dlv options kept",
			`{"target":"pod/web","namespace":"shop","localRoot":"/src","stackTraceDepth":80,"showGlobalVariables":true}`,
			map[string]any{"mode": "remote", "stackTraceDepth": 80.0, "showGlobalVariables": true,
				"substitutePath": []any{map[string]any{"from": "/src", "to": "/build"}}}},
		{"explicit substitutePath wins",
			`{"target":"web","substitutePath":[{"from":"/a","to":"/b"}]}`,
			map[string]any{"mode": "remote", "substitutePath": []any{map[string]any{"from": "/a", "to": "/b"}}}},
		{"no localRoot: no mapping", `{"target":"web","mode":"local"}`, map[string]any{"mode": "remote"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var root string
			var u struct {
				LocalRoot string `json:"localRoot"`
			}
			json.Unmarshal([]byte(tc.user), &u)
			root = u.LocalRoot
			raw, _, err := GoAttachArguments(json.RawMessage(tc.user), target, root, local)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			json.Unmarshal(raw, &got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("arguments (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := GoAttachArguments(json.RawMessage(`[1]`), target, "", nil); err == nil {
		t.Error("non-object attach arguments accepted")
	}
}

// TestInspectGo runs real processes: the gohttp fixture built normally and
// stripped, and a program that is not Go.
func TestInspectGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir := t.TempDir()
	build := func(name string, flags ...string) string {
		out := filepath.Join(dir, name)
		args := append(append([]string{"build"}, flags...), "-o", out, "../test/fixtures/gohttp")
		if msg, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, msg)
		}
		return out
	}
	start := func(name string, args ...string) int {
		cmd := exec.Command(name, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	repo, _ := filepath.Abs("..")

	t.Run("Go with debug information", func(t *testing.T) {
		got, err := InspectGo(start(build("debug"), "-listen", "127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		if got.Sources != nil {
			t.Errorf("InspectGo read the sources (%d): ReadGoSources does, while Delve attaches", len(got.Sources))
		}
		if err := ReadGoSources(got); err != nil {
			t.Fatal(err)
		}
		if got.Runtime != "go" || !strings.HasPrefix(got.Version, "go1.") || got.Module != "github.com/kdap/kdap" {
			t.Errorf("InspectGo = %+v", got)
		}
		if want := filepath.Join(repo, "test/fixtures/gohttp/main.go"); !contains(got.Sources, want) {
			t.Errorf("sources %v do not list %s", got.Sources, want)
		}
	})
	t.Run("Go built with -trimpath records module paths", func(t *testing.T) {
		got, err := InspectGo(start(build("trim", "-trimpath"), "-listen", "127.0.0.1:0"))
		if err == nil {
			err = ReadGoSources(got)
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := "github.com/kdap/kdap/test/fixtures/gohttp/main.go"; !contains(got.Sources, want) {
			t.Errorf("sources %v do not list %s", got.Sources, want)
		}
	})
	t.Run("stripped Go", func(t *testing.T) {
		_, err := InspectGo(start(build("stripped", "-ldflags=-s -w"), "-listen", "127.0.0.1:0"))
		if want := `has no debug information: it was built with -ldflags="-s -w"`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("InspectGo = %v, want an error containing %q", err, want)
		}
	})
	t.Run("not Go", func(t *testing.T) {
		_, err := InspectGo(start("sleep", "30"))
		var notGo *NotThisRuntimeError
		if !errors.As(err, &notGo) || !strings.Contains(err.Error(), "is not a Go program") {
			t.Errorf("InspectGo = %v, want a *NotThisRuntimeError", err)
		}
	})
}

func TestLocalSourcesSkipsVendorAndHidden(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"a.go", "pkg/b.go", "vendor/x/c.go", ".git/d.go", "node_modules/e.go", "pkg/f.txt"} {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	got, err := LocalSources(root, []string{".go"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a.go", "pkg/b.go"}, got); diff != "" {
		t.Errorf("LocalSources (-want +got):\n%s", diff)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
