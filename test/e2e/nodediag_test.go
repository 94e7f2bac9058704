//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/test/fixtures"
)

// TestNodeDumpProfileAndHeapWhileServing: kdap dump names the handler the
// main thread is busy in; kdap profile saves a .cpuprofile and kdap heap a
// .heapsnapshot, both parsed as V8 writes them; the service answers after
// each, and the inspector SIGUSR1 opened is closed again.
func TestNodeDumpProfileAndHeapWhileServing(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.NodeHTTPImage)
	logsOnFailure(t, ns, "web")
	waitLog(t, ns, "web", "nodehttp listening")
	svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=2", svc)), "total: 14", 10*time.Second)
	dir := t.TempDir()

	busy := getAsync(fmt.Sprintf("http://%s/busy?ms=3000", svc))
	time.Sleep(300 * time.Millisecond)
	out := runKdap(t, "dump", "pod/web", "-n", ns, "-o", filepath.Join(dir, "stack.txt"))
	if !regexp.MustCompile(`JavaScript stack dump of pid \d+ \(\S+\) saved to .*; the target was stopped [\d.]+(µs|ms|s)\)`).MatchString(out) {
		t.Errorf("kdap dump said %q", out)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "stack.txt"))
	if !strings.Contains(string(text), "at busyWork (file:///app/server.js:") {
		t.Errorf("stack dump:\n%s", text)
	}
	expectReply(t, busy, "busy for 3000 ms", 10*time.Second)

	busy = getAsync(fmt.Sprintf("http://%s/busy?ms=1000", svc))
	out = runKdap(t, "profile", "pod/web", "-n", ns, "--duration", "2s")
	file := savedFile(t, out, ".cpuprofile")
	var profile struct {
		Nodes   []json.RawMessage `json:"nodes"`
		Samples []int             `json:"samples"`
	}
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &profile) != nil || len(profile.Samples) == 0 || !strings.Contains(string(b), "/app/server.js") {
		t.Errorf("CPU profile %s: %v, %d nodes, %d samples", file, err, len(profile.Nodes), len(profile.Samples))
	}
	svg := regexp.MustCompile(`flame graph: (\S+\.svg)`).FindStringSubmatch(out)
	if svg == nil {
		t.Fatalf("kdap profile names no flame graph: %q", out)
	}
	checkFlameGraph(t, svg[1], "server.js")
	expectReply(t, busy, "busy for 1000 ms", 10*time.Second)

	if _, err := kdapCommand(t, "heap", "pod/web", "-n", ns, "--redact"); err == nil || !strings.Contains(err.Error(), "--redact masks text dumps only") {
		t.Errorf("kdap heap --redact of a Node.js target: %v; want it refused", err)
	}
	out = runKdap(t, "heap", "pod/web", "-n", ns)
	file = savedFile(t, out, ".heapsnapshot")
	var snap struct {
		Snapshot struct {
			NodeCount int `json:"node_count"`
		} `json:"snapshot"`
	}
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &snap) != nil || snap.Snapshot.NodeCount == 0 {
		t.Errorf("heap snapshot %s: %v, %d nodes", file, err, snap.Snapshot.NodeCount)
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=3", svc)), "total: 21", 10*time.Second)
	expectInspectorClosed(t, ns, "web")
}

// savedFile is the file kdap said it saved, by its absolute path, which
// must end in ext.
func savedFile(t *testing.T, out, ext string) string {
	t.Helper()
	m := regexp.MustCompile(`saved to (\S+)`).FindStringSubmatch(out)
	if m == nil || !filepath.IsAbs(m[1]) || !strings.HasSuffix(m[1], ext) {
		t.Fatalf("kdap said %q; want an absolute path to a %s file", out, ext)
	}
	return m[1]
}

// checkFlameGraph parses an SVG flame graph and checks that a frame names
// frame.
func checkFlameGraph(t *testing.T, file, frame string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	titles := 0
	found := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("flame graph %s is not well-formed: %v", file, err)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.Contains(string(cd), "samples,") {
			titles++
			found = found || strings.Contains(string(cd), frame)
		}
	}
	if !found {
		t.Errorf("no frame of the flame graph %s (%d frames) names %s", file, titles, frame)
	}
}
