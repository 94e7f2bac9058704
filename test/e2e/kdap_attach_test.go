//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"
	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// TestKdapAttachWithDelveJSONRPC is GoLand's path: `kdap attach` prints a
// local endpoint and a dlv JSON-RPC client debugs through it.
func TestKdapAttachWithDelveJSONRPC(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")

	cmd, addr, _ := startKdapAttach(t, "pod/gohttp", "-n", ns, "--image-go", fixtures.GoAgentImage)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	client := rpc2.NewClientFromConn(conn)
	if _, err := client.Halt(); err != nil { // Delve changes breakpoints only while halted
		t.Fatal(err)
	}
	// JSON-RPC clients speak the binary's paths (GoLand maps them itself).
	remote := filepath.Join(env.repo, "test", "fixtures", "gohttp", "main.go")
	line := lineOf(t, remote, "message := fmt.Sprintf")
	if _, err := client.CreateBreakpoint(&api.Breakpoint{File: remote, Line: line}); err != nil {
		t.Fatal(err)
	}
	states := client.Continue()
	reply := getAsync(fmt.Sprintf("http://%s/hello?name=goland", svc))
	var st *api.DebuggerState
	select {
	case st = <-states:
	case <-time.After(30 * time.Second):
		t.Fatal("no stop at the breakpoint")
	}
	if st.Err != nil || st.CurrentThread == nil || st.CurrentThread.Breakpoint == nil || st.CurrentThread.Line != line {
		t.Fatalf("state after continue: %+v (err %v)", st.CurrentThread, st.Err)
	}
	vars, err := client.ListFunctionArgs(api.EvalScope{GoroutineID: -1}, api.LoadConfig{MaxStringLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, v := range vars {
		if v.Name == "name" {
			name = v.Value
		}
	}
	if name != "goland" {
		t.Errorf("argument name = %q, want goland (args %v)", name, vars)
	}
	t.Logf("stopped at %s:%d in %s, name=%q", st.CurrentThread.File, st.CurrentThread.Line, st.CurrentThread.Function.Name(), name)

	// Leave without clearing the breakpoint, then stop kdap attach: the
	// agent releases the target once its last client is gone.
	conn.Close()
	expectReply(t, reply, "hello, goland", 30*time.Second)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("kdap attach after Ctrl-C: %v", err)
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=after", svc)), "hello, after", 10*time.Second)
}

// TestKdapAttachPythonWithADAPClient is the path of a DAP client that
// connects itself (nvim-dap, VS Code's debugpy type): `kdap attach
// --runtime python` prints the adapter's local endpoint and the source root
// to map; the client attaches to debugpy through it.
func TestKdapAttachPythonWithADAPClient(t *testing.T) {
	ns := newNamespace(t, nil)
	svc, root, pricing, line := pyService(t, ns, "pyhttp")

	cmd, addr, text := startKdapAttach(t, "pod/pyhttp", "-n", ns, "--runtime", "python", "--image-python", fixtures.PythonAgentImage)
	if want := fmt.Sprintf(`"remoteRoot": %q`, fixtures.PyHTTPSourceRoot); !strings.Contains(text, want) {
		t.Errorf("kdap attach printed %q, want it to name %s", text, want)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = time.Minute
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "debugpy", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attachSeq := c.Send("attach", map[string]any{"pathMappings": []map[string]string{{"localRoot": root, "remoteRoot": fixtures.PyHTTPSourceRoot}}})
	c.ExpectEvent(t, "initialized")
	bpSeq := c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: pricing}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}})
	c.ExpectResponses(t, attachSeq, bpSeq, c.Send("configurationDone", nil))
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=2", svc))
	thread, _ := expectStop(t, c, pricing, line)
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "total: 14", 10*time.Second)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	conn.Close()
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("kdap attach after Ctrl-C: %v", err)
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
}

// startKdapAttach runs `kdap attach ARGS` against the test cluster until the
// test ends and returns it with the endpoint and the whole line it printed.
func startKdapAttach(t *testing.T, args ...string) (cmd *exec.Cmd, addr, line string) {
	t.Helper()
	cmd = exec.Command(env.kdap, append(append([]string{"attach"}, args...), "--kubeconfig", env.cluster.Kubeconfig())...)
	cmd.Stderr = &testWriter{t: t, prefix: "kdap attach: "}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	printed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "kdap: debugger listening at: ") {
				printed <- sc.Text()
			}
		}
	}()
	select {
	case line = <-printed:
	case <-time.After(60 * time.Second):
		t.Fatal("kdap attach printed no endpoint within 60s")
	}
	_, rest, _ := strings.Cut(line, "kdap: debugger listening at: ")
	return cmd, strings.Fields(rest)[0], line
}
