//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kdap/kdap/test/fixtures"
)

// vscodeTools are what vscode-extension/test/setup.sh prepares.
var vscodeTools struct {
	once       sync.Once
	err        error
	dir        string // vscode-extension
	node24     string
	codeServer string
}

// vscodeSetup builds the extension (.vsix) and installs code-server, once.
func vscodeSetup(t *testing.T) {
	t.Helper()
	v := &vscodeTools
	v.once.Do(func() {
		v.dir = filepath.Join(env.repo, "vscode-extension")
		cmd := exec.Command("bash", "test/setup.sh")
		cmd.Dir = v.dir
		cmd.Stderr = &testWriter{t: t, prefix: "setup: "}
		out, err := cmd.Output()
		if err != nil {
			v.err = fmt.Errorf("vscode-extension/test/setup.sh: %v", err)
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			if k, val, ok := strings.Cut(line, "="); ok {
				switch k {
				case "NODE24":
					v.node24 = val
				case "CODE_SERVER":
					v.codeServer = val
				}
			}
		}
	})
	if v.err != nil {
		t.Fatal(v.err)
	}
}

// vscodeWorkspace is a workspace folder with a copy of the Go fixture and
// of the Node.js one (nodehttp/) and the Java one (javahttp/), and a
// launch.json naming the pods: the Go pod, the picker, the "shop" pod's
// Node.js and Go containers, alone and as a compound, and the Java pod.
func vscodeWorkspace(t *testing.T, ns, pod string) (root, mainGo string) {
	t.Helper()
	root, mainGo = localCopy(t)
	nodeRoot, _, _ := nodeJS.localCopy(t)
	if err := os.Rename(nodeRoot, filepath.Join(root, "nodehttp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(javaLocalCopy(t).root, filepath.Join(root, "javahttp")); err != nil {
		t.Fatal(err)
	}
	shop := func(name, container, image, localRoot string) map[string]any {
		return map[string]any{
			"name": name, "type": "kdap", "request": "attach", "target": "pod/shop", "container": container, "namespace": ns,
			"kubeconfig": env.cluster.Kubeconfig(), "image": image, "localRoot": localRoot,
		}
	}
	launch := map[string]any{
		"version": "0.2.0",
		"configurations": []any{
			map[string]any{
				"name": "kdap: " + pod, "type": "kdap", "request": "attach",
				"target": "pod/" + pod, "namespace": ns, "kubeconfig": env.cluster.Kubeconfig(),
				"image": fixtures.GoAgentImage, "localRoot": "${workspaceFolder}",
			},
			map[string]any{ // no target: the extension asks namespace → pod
				"name": "kdap: pick a pod", "type": "kdap", "request": "attach",
				"kubeconfig": env.cluster.Kubeconfig(), "image": fixtures.GoAgentImage,
			},
			shop("kdap: web", "web", fixtures.NodeAgentImage, "${workspaceFolder}/nodehttp"),
			map[string]any{
				"name": "kdap: java", "type": "kdap", "request": "attach", "target": "pod/javashop", "namespace": ns,
				"kubeconfig": env.cluster.Kubeconfig(), "image": fixtures.JavaAgentImage, "localRoot": "${workspaceFolder}/javahttp",
			},
			shop("kdap: api", "api", fixtures.GoAgentImage, "${workspaceFolder}"),
			map[string]any{ // a child session per replica
				"name": "kdap: every web pod", "type": "kdap", "request": "attach", "target": "deployment/web", "replicas": "all",
				"namespace": ns, "kubeconfig": env.cluster.Kubeconfig(), "image": fixtures.GoAgentImage, "localRoot": "${workspaceFolder}",
			},
		},
		"compounds": []any{
			map[string]any{"name": "kdap: web + api", "configurations": []string{"kdap: web", "kdap: api"}, "stopAll": true},
		},
	}
	b, _ := json.MarshalIndent(launch, "", "  ")
	os.MkdirAll(filepath.Join(root, ".vscode"), 0o755)
	if err := os.WriteFile(filepath.Join(root, ".vscode", "launch.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, mainGo
}

// TestVSCodeAdapterWithDebugClient runs the extension's adapter tests:
// VS Code's DebugClient drives `kdap dap` against the Go fixture.
func TestVSCodeAdapterWithDebugClient(t *testing.T) {
	vscodeSetup(t)
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	root, mainGo := localCopy(t)
	cmd := exec.Command("npm", "run", "--silent", "test:adapter")
	cmd.Dir = vscodeTools.dir
	cmd.Env = append(os.Environ(), "KDAP="+env.kdap, "KUBECONFIG="+env.cluster.Kubeconfig(), "NAMESPACE="+ns, "POD=gohttp",
		"IMAGE="+fixtures.GoAgentImage, "LOCAL_ROOT="+root, "FILE="+mainGo,
		fmt.Sprintf("LINE=%d", lineOf(t, mainGo, "message := fmt.Sprintf")), "SERVICE="+svc)
	out, err := cmd.CombinedOutput()
	t.Logf("npm run test:adapter:\n%s", out)
	if err != nil {
		t.Fatalf("adapter tests failed: %v", err)
	}
}

// TestVSCodeExtensionInCodeServer installs the built .vsix into code-server
// (VS Code in a browser), opens the fixture's folder in headless Chromium,
// sets a breakpoint in the editor, starts the kdap launch configuration and
// reads from the UI that the editor stopped on the breakpoint's line. The
// screenshot is kept in test/e2e/artifacts/.
func TestVSCodeExtensionInCodeServer(t *testing.T) {
	vscodeSetup(t)
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	createShop(t, ns)
	createReplicas(t, ns, "web-a", "web-b")
	svc := serviceForward(t, ns, "gohttp")
	root, mainGo := vscodeWorkspace(t, ns, "gohttp")
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	nodeLines := struct{ pricing, checkout int }{
		lineOf(t, filepath.Join(root, "nodehttp", "lib", "pricing.js"), nodeJS.line),
		lineOf(t, filepath.Join(root, "nodehttp", "server.js"), "const url = `${goService}/hello"),
	}

	data, exts := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(data, "User"), 0o755)
	settings, _ := json.Marshal(map[string]any{
		"kdap.path": env.kdap, "security.workspace.trust.enabled": false, "workbench.startupEditor": "none",
		"telemetry.telemetryLevel": "off", "extensions.autoCheckUpdates": false, "extensions.autoUpdate": false,
		"update.mode": "none", "workbench.tips.enabled": false,
		"kdap.trace": true, "chat.disableAIFeatures": true, "workbench.secondarySideBar.defaultVisibility": "hidden", // no chat panel taking the focus
	})
	os.WriteFile(filepath.Join(data, "User", "settings.json"), settings, 0o644)
	config := filepath.Join(data, "config.yaml")
	port := freeTCPPort(t)
	os.WriteFile(config, []byte(fmt.Sprintf("bind-addr: 127.0.0.1:%d\nauth: none\n", port)), 0o644)
	codeServer := func(args ...string) *exec.Cmd {
		cmd := exec.Command(vscodeTools.codeServer, append([]string{"--config", config, "--user-data-dir", data, "--extensions-dir", exts}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(vscodeTools.node24)+":"+os.Getenv("PATH"),
			"XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+data, "XDG_STATE_HOME="+env.state, // its logs and heartbeat stay out of $HOME
			"KUBECONFIG="+env.cluster.Kubeconfig()) // the kdap commands the extension runs use the user's cluster and images
		cmd.Env = append(cmd.Env, "KDAP_IMAGE_REPOSITORY="+env.images) // kdap's default images, in the suite's registry
		return cmd
	}
	vsix := filepath.Join(vscodeTools.dir, "kdap.vsix")
	if out, err := codeServer("--install-extension", vsix).CombinedOutput(); err != nil || !strings.Contains(string(out), "successfully installed") {
		t.Fatalf("code-server --install-extension %s: %v\n%s", vsix, err, out)
	}
	t.Logf("installed %s into code-server", vsix)

	server := codeServer("--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", root)
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // it starts helpers: stop them all
	serverLog := &testWriter{t: t, prefix: "code-server: "}
	server.Stdout, server.Stderr = serverLog, serverLog
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-server.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("code-server did not answer within 60s")
		}
	}

	artifacts := filepath.Join(env.repo, "test", "e2e", "artifacts")
	os.MkdirAll(artifacts, 0o755)
	t.Cleanup(func() { // keep the extension's DAP trace of a failed run
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(data, "logs", "*", "exthost*", "kdap.kdap", "kdap.log"))
		for i, p := range logs {
			if b, err := os.ReadFile(p); err == nil {
				kept := filepath.Join(artifacts, fmt.Sprintf("vscode-kdap-trace-%d.log", i+1))
				os.WriteFile(kept, b, 0o644)
				t.Logf("the extension's DAP trace: %s", kept)
			}
		}
	})
	shot := filepath.Join(artifacts, "vscode-stopped-at-breakpoint.png")
	goBP := fmt.Sprintf("test/fixtures/gohttp/main.go:%d", line)
	goRun := uiRun{config: "kdap: gohttp", breakpoints: []string{goBP}, request: "/hello?name=ui", reply: "hello, ui"}
	if got, want := runUI(t, url, root, svc, shot, goRun), []string{fmt.Sprintf("main.go %d", line)}; !slices.Equal(got, want) {
		t.Fatalf("the editor shows the stop at %q, want %q", got, want)
	}
	t.Logf("the editor stopped at main.go:%d; screenshot: %s", line, shot)

	// Again with the configuration that names no target: the picker.
	shot = filepath.Join(artifacts, "vscode-picked-pod-stopped.png")
	goRun.config, goRun.pick = "kdap: pick a pod", []string{ns, "gohttp"}
	if got, want := runUI(t, url, root, svc, shot, goRun), []string{fmt.Sprintf("main.go %d", line)}; !slices.Equal(got, want) {
		t.Fatalf("after picking the pod, the editor shows the stop at %q, want %q", got, want)
	}
	t.Logf("picked %s → gohttp and stopped at main.go:%d; screenshot: %s", ns, line, shot)

	// Deployment replicas: one child session per pod under the parent in
	// the call stack; a request to web-b stops in its session.
	shot = filepath.Join(artifacts, "vscode-replicas-stopped.png")
	replicaRun := uiRun{config: "kdap: every web pod", breakpoints: []string{goBP}, request: "/hello?name=replica", reply: "hello, replica",
		sessions: 3, shown: []string{"pod web-a", "pod web-b"}}
	if got, want := runUI(t, url, root, serviceForward(t, ns, "web-b"), shot, replicaRun), []string{fmt.Sprintf("main.go %d", line)}; !slices.Equal(got, want) {
		t.Fatalf("with a child session per replica, the editor shows the stop at %q, want %q", got, want)
	}
	t.Logf("the call stack showed both replicas' sessions; stopped in web-b at main.go:%d; screenshot: %s", line, shot)

	// Node.js: a breakpoint in the JavaScript service stops there.
	shop := podForward(t, ns, "shop", fixtures.NodeHTTPPort)
	shot = filepath.Join(artifacts, "vscode-node-stopped.png")
	nodeRun := uiRun{config: "kdap: web", breakpoints: []string{fmt.Sprintf("nodehttp/lib/pricing.js:%d", nodeLines.pricing)},
		request: "/quote?items=", reply: "total: "}
	if got, want := runUI(t, url, root, shop, shot, nodeRun), []string{fmt.Sprintf("pricing.js %d", nodeLines.pricing)}; !slices.Equal(got, want) {
		t.Fatalf("the editor shows the Node.js stop at %q, want %q", got, want)
	}
	t.Logf("the editor stopped at pricing.js:%d; screenshot: %s", nodeLines.pricing, shot)

	// The compound: a request to the Node.js service stops there first,
	// then, once continued, in the Go service it calls.
	shot = filepath.Join(artifacts, "vscode-node-then-go.png")
	both := uiRun{config: "kdap: web + api", breakpoints: []string{fmt.Sprintf("nodehttp/server.js:%d", nodeLines.checkout), goBP},
		stops: 2, sessions: 2, request: "/checkout?name=ui", reply: "checkout for ui"}
	if got, want := runUI(t, url, root, shop, shot, both), []string{fmt.Sprintf("server.js %d", nodeLines.checkout), fmt.Sprintf("main.go %d", line)}; !slices.Equal(got, want) {
		t.Fatalf("the compound stopped at %q, want %q", got, want)
	}
	t.Logf("the compound stopped in Node.js, then in Go; screenshots: %s", shot)

	// Java: a breakpoint in the nested class of the Java service (its
	// sources under javahttp/src/main/java) stops there.
	javaSvc := jdk17.pod(t, ns, "javashop", true)
	pricingLine := lineOf(t, filepath.Join(root, "javahttp", "src", "main", "java", "shop", "pricing", "Pricing.java"), javaSumLine)
	shot = filepath.Join(artifacts, "vscode-java-stopped.png")
	javaRun := uiRun{config: "kdap: java", breakpoints: []string{fmt.Sprintf("javahttp/src/main/java/shop/pricing/Pricing.java:%d", pricingLine)},
		request: "/quote?items=", reply: "total: "}
	if got, want := runUI(t, url, root, javaSvc, shot, javaRun), []string{fmt.Sprintf("Pricing.java %d", pricingLine)}; !slices.Equal(got, want) {
		t.Fatalf("the editor shows the Java stop at %q, want %q", got, want)
	}
	t.Logf("the editor stopped at Pricing.java:%d; screenshot: %s", pricingLine, shot)

	// The command kdap.diagnose: the pod picker, then the diagnostics of
	// the pod's runtime; the goroutine dump opens in an editor, and lives
	// in the workspace's .kdap folder.
	busy := getAsync(fmt.Sprintf("http://%s/busy?ms=40000", svc))
	diag := exec.Command("node", "test/ui/take-diagnostic.mjs", url, root, ns, "gohttp", "goroutine dump", filepath.Join(artifacts, "vscode-diagnostic.png"))
	diag.Dir = vscodeTools.dir
	diag.Stderr = &testWriter{t: t, prefix: ""}
	out, err := diag.Output()
	t.Logf("ui says: %s", out)
	if err != nil || !regexp.MustCompile(`OPENED gohttp-threads-\d{8}T\d{6}\.txt`).Match(out) || !strings.Contains(string(out), "# goroutines of pid 1") {
		t.Errorf("the goroutine dump did not open in the editor (%v): %s", err, out)
	}
	if dumps, _ := filepath.Glob(filepath.Join(root, ".kdap", "gohttp-threads-*.txt")); len(dumps) != 1 {
		t.Errorf("the workspace's .kdap folder holds %v", dumps)
	} else if b, _ := os.ReadFile(dumps[0]); !strings.Contains(string(b), "main.handleBusy") {
		t.Errorf("the dump %s does not name the busy handler:\n%.1000s", dumps[0], b)
	}
	expectReply(t, busy, "busy for 40000 ms", 55*time.Second)

	// kdap.trace: the DAP traffic is in the "kdap" output channel's log.
	var traced []string
	filepath.WalkDir(filepath.Join(data, "logs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "kdap") {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "request attach") {
				traced = append(traced, p)
			}
		}
		return nil
	})
	if len(traced) == 0 {
		t.Error(`with "kdap.trace": true, no log of the "kdap" output channel holds the attach request`)
	} else {
		t.Logf("DAP trace in %s", traced[0])
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=after", svc)), "hello, after", 10*time.Second)
}

// uiRun is one run of test/ui/stop-at-breakpoint.mjs.
type uiRun struct {
	config      string   // launch configuration or compound to start
	breakpoints []string // FILE:LINE, relative to the workspace
	stops       int      // stops the UI waits for, continuing after each
	sessions    int      // sessions to disconnect at the end
	request     string   // URL path sent (repeatedly, until the first stop) to svc
	reply       string   // what the stopped request's reply starts with
	pick        []string // namespace and pod to answer the picker with
	shown       []string // texts the call stack must show at the first stop
}

// runUI runs the UI script for one launch configuration, sends requests to
// the service once the session starts, and returns where the UI showed
// each stop ("main.go 22"); it checks that the stopped request was
// answered after the script continued and disconnected.
func runUI(t *testing.T, url, root, svc, shot string, r uiRun) []string {
	t.Helper()
	args := []string{"test/ui/stop-at-breakpoint.mjs", url, root, r.config, shot, "--stops", fmt.Sprint(max(r.stops, 1)), "--sessions", fmt.Sprint(max(r.sessions, 1))}
	for _, bp := range r.breakpoints {
		args = append(args, "--bp", bp)
	}
	if len(r.pick) == 2 {
		args = append(args, "--pick", r.pick[0], r.pick[1])
	}
	for _, s := range r.shown {
		args = append(args, "--shown", s)
	}
	ui := exec.Command("node", args...)
	ui.Dir = vscodeTools.dir
	ui.Stderr = &testWriter{t: t, prefix: ""}
	stdout, _ := ui.StdoutPipe()
	if err := ui.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	go func() { <-ctx.Done(); ui.Process.Kill() }()

	var stoppedAt []string
	var stopped sync.Once
	stopSeen := make(chan struct{})
	loopDone := make(chan struct{}) // closed when the request that stopped has its reply
	replies := make(chan string, 64)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		text := sc.Text()
		t.Logf("ui says: %s", text)
		switch {
		case text == "STARTED":
			// Send requests one at a time until one stops at the breakpoint
			// (the first may come before the session is configured).
			go func() {
				defer close(loopDone)
				for i := 0; ; i++ {
					select {
					case <-stopSeen:
						return
					case <-ctx.Done():
						return
					default:
					}
					u := fmt.Sprintf("http://%s%s%d", svc, r.request, i)
					sent := time.Now()
					reply := <-getAsync(u)
					if d := time.Since(sent); d > 2*time.Second { // the one that stopped, or a slow one
						t.Logf("%s GET %s answered after %v", sent.UTC().Format("15:04:05.000"), u, d.Round(time.Millisecond))
					}
					replies <- reply
					time.Sleep(300 * time.Millisecond)
				}
			}()
		case strings.HasPrefix(text, "STOPPED "):
			stoppedAt = append(stoppedAt, strings.TrimPrefix(text, "STOPPED "))
			stopped.Do(func() { close(stopSeen) })
		}
	}
	if err := ui.Wait(); err != nil {
		t.Fatalf("the UI script failed: %v (a screenshot of the failure is next to %s)", err, shot)
	}
	select {
	case <-loopDone:
		close(replies)
		for reply := range replies {
			if !strings.HasPrefix(reply, r.reply) {
				t.Errorf("reply %q, want it to start with %q", reply, r.reply)
			}
		}
	case <-time.After(30 * time.Second):
		t.Error("the stopped request was not answered after continue and disconnect")
	}
	return stoppedAt
}

// freeTCPPort is a loopback port nobody listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
