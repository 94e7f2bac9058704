package runtimes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNodeScriptAndSourceRoot(t *testing.T) {
	exists := func(files ...string) func(string) bool {
		return func(p string) bool {
			for _, f := range files {
				if f == p {
					return true
				}
			}
			return false
		}
	}
	for _, tc := range []struct {
		name   string
		argv   []string
		cwd    string
		files  func(string) bool
		script string
		root   string
	}{
		{"script with a package.json above it", []string{"node", "/app/dist/server.js"}, "/", exists("/app/package.json"), "/app/dist/server.js", "/app"},
		{"relative script, options before it", []string{"node", "--max-old-space-size", "512", "-r", "dotenv/config", "--enable-source-maps", "src/main.js", "--port", "80"},
			"/srv", exists(), "src/main.js", "/srv/src"},
		{"a CLI under node_modules starts the app", []string{"node", "/app/node_modules/.bin/next", "start"}, "/app", exists(), "/app/node_modules/.bin/next", "/app"},
		{"node -e: the working directory", []string{"node", "-e", "require('./x')"}, "/work", exists(), "", "/work"},
		{"after --", []string{"node", "--", "index.js"}, "/w", exists("/w/package.json"), "index.js", "/w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NodeScript(tc.argv); got != tc.script {
				t.Errorf("NodeScript = %q, want %q", got, tc.script)
			}
			if got := NodeSourceRoot(tc.argv, tc.cwd, tc.files); got != tc.root {
				t.Errorf("NodeSourceRoot = %q, want %q", got, tc.root)
			}
		})
	}
}

func TestNodeInspectorAddress(t *testing.T) {
	for _, tc := range []struct {
		argv        []string
		nodeOptions string
		host        string
		port        int
		open        bool
	}{
		{[]string{"node", "server.js"}, "", "127.0.0.1", 9229, false},
		{[]string{"node", "--inspect-port=9339", "server.js"}, "", "127.0.0.1", 9339, false},
		{[]string{"node", "--inspect=0.0.0.0:9230", "server.js"}, "", "0.0.0.0", 9230, true},
		{[]string{"node", "--inspect", "server.js"}, "", "127.0.0.1", 9229, true},
		{[]string{"node", "server.js"}, "--inspect-port=127.0.0.1:0 --max-old-space-size=100", "127.0.0.1", 0, false},
		{[]string{"node", "server.js", "--inspect-port=1"}, "", "127.0.0.1", 9229, false}, // the program's own argument
	} {
		host, port, open := NodeInspectorAddress(tc.argv, tc.nodeOptions)
		if host != tc.host || port != tc.port || open != tc.open {
			t.Errorf("NodeInspectorAddress(%q, %q) = %s, %d, %v; want %s, %d, %v", tc.argv, tc.nodeOptions, host, port, open, tc.host, tc.port, tc.open)
		}
	}
}

func TestNodeAttachArguments(t *testing.T) {
	target := &Target{Runtime: nodeName, Root: "/app", Sources: []string{"/app/server.js", "/app/lib/pricing.js"}}
	for _, tc := range []struct {
		name, user, localRoot string
		local                 []string
		want                  map[string]any
	}{
		{"mapped by the files both sides have, kdap keys dropped, js-debug options kept",
			`{"target":"pod/web","localRoot":"/ws/svc","smartStep":false}`, "/ws/svc", []string{"server.js", "lib/pricing.js"},
			map[string]any{"localRoot": "/ws/svc", "remoteRoot": "/app", "smartStep": false}},
		{"a monorepo: the service is a subfolder of localRoot",
			`{"target":"web"}`, "/ws", []string{"services/web/server.js", "services/web/lib/pricing.js"},
			map[string]any{"localRoot": "/ws/services/web", "remoteRoot": "/app"}},
		{"nothing in common: localRoot is the target's source root",
			`{"target":"web"}`, "/ws", []string{"src/index.ts"}, map[string]any{"localRoot": "/ws", "remoteRoot": "/app"}},
		{"explicit remoteRoot wins", `{"target":"web","remoteRoot":"/srv/app"}`, "/ws", []string{"server.js"},
			map[string]any{"localRoot": "/ws", "remoteRoot": "/srv/app"}},
		{"no localRoot: the container's paths", `{"target":"web"}`, "", nil, map[string]any{"remoteRoot": "/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, _, err := NodeAttachArguments(json.RawMessage(tc.user), target, tc.localRoot, tc.local)
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
}

func TestNodeVersionSupported(t *testing.T) {
	for v, want := range map[string]bool{"24.21.0": true, "10.24.1": true, "8.17.0": false, "": true, "v?": true} {
		if got := NodeVersionSupported(v); got != want {
			t.Errorf("NodeVersionSupported(%q) = %v", v, got)
		}
	}
}

// TestSourceMapProblems: a map the target's user cannot read, or that is
// missing, is named; readable, inline and remote maps are not.
func TestSourceMapProblems(t *testing.T) {
	root := t.TempDir()
	write := func(p, content string, mode os.FileMode) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	write("app/dist/ok.js", "x()\n//# sourceMappingURL=ok.js.map\n", 0o644)
	write("app/dist/ok.js.map", "{}", 0o644)
	write("app/dist/secret.js", "x()\n//# sourceMappingURL=secret.js.map", 0o644)
	write("app/dist/secret.js.map", "{}", 0o600)
	write("app/dist/gone.js", "//# sourceMappingURL=../maps/gone.js.map\n", 0o644)
	write("app/dist/inline.js", "//# sourceMappingURL=data:application/json;base64,e30=\n", 0o644)
	write("app/dist/plain.js", "console.log(1)\n", 0o644)
	scripts := []string{"/app/dist/ok.js", "/app/dist/secret.js", "/app/dist/gone.js", "/app/dist/inline.js", "/app/dist/plain.js", "/app/src/a.ts"}
	// The files belong to whoever runs the test; the target is another user.
	got := SourceMapProblems(root, scripts, 65532, 65532)
	if len(got) != 2 || !strings.Contains(got[0], "/app/dist/secret.js.map") || !strings.Contains(got[0], "not readable by the target's user 65532") ||
		!strings.Contains(got[1], "/app/maps/gone.js.map, which is missing") {
		t.Errorf("SourceMapProblems = %q", got)
	}
	if got := SourceMapProblems(root, scripts, os.Getuid(), os.Getgid()); len(got) != 1 {
		t.Errorf("for the files' owner: %q, want only the missing map", got)
	}
}
