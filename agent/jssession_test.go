package agent

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kdap/kdap/runtimes"
)

// TestRewritePaths: every Source path (and a Source's name, which js-debug
// sets to the path) under the prefix is mapped, nothing else is touched.
func TestRewritePaths(t *testing.T) {
	const pod, ide = "/proc/1/root/app", "/home/me/shop"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"stack frames",
			`{"body":{"stackFrames":[{"id":0,"name":"quote","source":{"name":"/proc/1/root/app/lib/p.js","path":"/proc/1/root/app/lib/p.js","sourceReference":0},"line":7}]}}`,
			`{"body":{"stackFrames":[{"id":0,"line":7,"name":"quote","source":{"name":"/home/me/shop/lib/p.js","path":"/home/me/shop/lib/p.js","sourceReference":0}}]}}`},
		{"the prefix itself, and not a longer name", `{"a":{"path":"/proc/1/root/app"},"b":{"path":"/proc/1/root/apple/x.js"}}`,
			`{"a":{"path":"/home/me/shop"},"b":{"path":"/proc/1/root/apple/x.js"}}`},
		{"a name that is no Source's stays", `{"name":"/proc/1/root/app/x","value":"/proc/1/root/app/y"}`, `{"name":"/proc/1/root/app/x","value":"/proc/1/root/app/y"}`},
		{"paths outside the prefix stay", `{"source":{"path":"<node_internals>/timers"}}`, `{"source":{"path":"<node_internals>/timers"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rewritePaths([]byte(tc.in), pod, ide)
			var g, w any
			json.Unmarshal(got, &g)
			json.Unmarshal([]byte(tc.want), &w)
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("rewritePaths (-want +got):\n%s", diff)
			}
		})
	}
	// Numbers survive the round trip exactly (variablesReference, big ids).
	in := `{"body":{"variablesReference":9007199254740993,"source":{"path":"/proc/1/root/app/a.js"}}}`
	if got := string(rewritePaths([]byte(in), pod, ide)); got != `{"body":{"source":{"path":"/home/me/shop/a.js"},"variablesReference":9007199254740993}}` {
		t.Errorf("numbers: %s", got)
	}
}

// TestJSAttachArguments: kdap's attach arguments become js-debug's attach
// to the relay, with js-debug reading the target's files through
// /proc/PID/root and the client's folder mapped onto it.
func TestJSAttachArguments(t *testing.T) {
	s := &jsSession{relay: "127.0.0.1:4000", target: &runtimes.Target{PID: 7, Root: "/srv"}}
	raw, err := s.jsAttachArguments(json.RawMessage(`{"localRoot":"/ws","remoteRoot":"/app","smartStep":false,"outFiles":["/ws/dist/**/*.js","!/ws/dist/vendor/**"],"port":1,"type":"kdap"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(raw, &got)
	want := map[string]any{
		"type": "pwa-node", "request": "attach", "name": "kdap", "address": "127.0.0.1", "port": 4000.0, "restart": false,
		"localRoot": "/proc/7/root/app", "remoteRoot": "/app", "cwd": "/proc/7/root/app", "smartStep": false,
		"outFiles":                  []any{"/proc/7/root/app/dist/**/*.js", "!/proc/7/root/app/dist/vendor/**"},
		"resolveSourceMapLocations": []any{"/proc/7/root/app/**", "!**/node_modules/**"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("js-debug attach (-want +got):\n%s", diff)
	}
	if s.ideRoot != "/ws" || s.podRoot != "/proc/7/root/app" {
		t.Errorf("roots %q ↔ %q", s.ideRoot, s.podRoot)
	}
}
