// Command demo is `make demo`: it brings up the local test cluster (always:
// the sample images are loaded into that node, no registry is involved),
// deploys the sample Go service, starts `kdap dap`, and has a scripted DAP
// client attach, stop at a breakpoint in a request handler and print the
// stack and locals — then says how to do the same from an IDE.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/test/cluster/localcluster"
	"github.com/kdap/kdap/test/fixtures"
)

const (
	namespace = "kdap-demo"
	podName   = "gohttp"
)

func main() {
	kdapBin := flag.String("kdap", "bin/kdap", "the kdap binary")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kdapBin); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, kdapBin string) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	kdapBin, _ = filepath.Abs(kdapBin)

	say("bringing up the local single-node Kubernetes (first time: ≈5 min to build it)")
	c, err := localcluster.New(localcluster.Config{Out: os.Stderr})
	if err != nil {
		return err
	}
	if err := c.Up(ctx); err != nil {
		return err
	}
	say("building the sample service and kdap's Go debugger image, loading them into the node")
	dir, err := os.MkdirTemp("", "kdap-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tars, err := fixtures.Build(ctx, repo, dir, fixtures.GoHTTPImage, fixtures.ImportedGoAgentImage)
	if err != nil {
		return err
	}
	if err := c.Load(ctx, tars...); err != nil {
		return err
	}
	restCfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	if err := deploy(ctx, client, c.NodeName()); err != nil {
		return err
	}

	say("starting kdap dap")
	kdap := exec.CommandContext(ctx, kdapBin, "dap", "--listen", "127.0.0.1:0", "--kubeconfig", c.Kubeconfig(), "--image-go", fixtures.ImportedGoAgentImage)
	kdap.Stderr = os.Stderr
	out, err := kdap.StdoutPipe()
	if err != nil {
		return err
	}
	if err := kdap.Start(); err != nil {
		return fmt.Errorf("start %s (run `make build` first): %w", kdapBin, err)
	}
	defer func() {
		kdap.Process.Signal(os.Interrupt)
		kdap.Wait()
	}()
	addr, err := readyLine(out)
	if err != nil {
		return err
	}
	fmt.Println("    kdap: DAP server listening at:", addr)

	mainGo := filepath.Join(repo, "test", "fixtures", "gohttp", "main.go")
	line, err := fixtures.LineOf(mainGo, "message := fmt.Sprintf")
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &session{r: dap.NewReader(conn), w: dap.NewWriter(conn)}

	say("a DAP client (what your IDE does) attaches to pod/%s in namespace %s", podName, namespace)
	if _, err := s.request("initialize", godap.InitializeRequestArguments{ClientID: "kdap-demo", AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path", SupportsProgressReporting: true, SupportsVariableType: true}); err != nil {
		return err
	}
	start := time.Now()
	if _, err := s.request("attach", map[string]any{"target": "pod/" + podName, "namespace": namespace, "localRoot": repo}); err != nil {
		return err
	}
	say("attached in %s; setting a breakpoint at %s:%d", time.Since(start).Round(time.Millisecond), rel(repo, mainGo), line)
	if _, err := s.request("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: mainGo}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}); err != nil {
		return err
	}
	if _, err := s.request("configurationDone", nil); err != nil {
		return err
	}

	d, err := forward.NewDialer(restCfg, forward.URL(client, namespace, podName))
	if err != nil {
		return err
	}
	fwd, err := forward.Start(ctx, d, 0, fixtures.GoHTTPPort)
	if err != nil {
		return err
	}
	defer fwd.Close()
	url := fmt.Sprintf("http://%s/hello?name=demo", fwd.Addr())
	say("sending GET %s to the service", strings.Replace(url, fwd.Addr(), podName+":8080", 1))
	reply := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 2 * time.Minute}).Get(url)
		if err != nil {
			reply <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		reply <- strings.TrimSpace(string(b))
	}()
	stopped, err := s.waitEvent("stopped")
	if err != nil {
		return err
	}
	var sb godap.StoppedEventBody
	json.Unmarshal(stopped.Body(), &sb)
	st, err := s.request("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 6})
	if err != nil {
		return err
	}
	var stack godap.StackTraceResponseBody
	json.Unmarshal(st.Body(), &stack)
	say("stopped at the breakpoint (%s); the request waits. Stack:", sb.Reason)
	for _, f := range stack.StackFrames {
		src := ""
		if f.Source != nil {
			src = rel(repo, f.Source.Path)
		}
		fmt.Printf("    %-28s %s:%d\n", f.Name, src, f.Line)
	}
	sc, err := s.request("scopes", godap.ScopesArguments{FrameId: stack.StackFrames[0].Id})
	if err != nil {
		return err
	}
	var scopes godap.ScopesResponseBody
	json.Unmarshal(sc.Body(), &scopes)
	say("locals of %s:", stack.StackFrames[0].Name)
	for _, scope := range scopes.Scopes {
		vr, err := s.request("variables", godap.VariablesArguments{VariablesReference: scope.VariablesReference})
		if err != nil {
			return err
		}
		var vars godap.VariablesResponseBody
		json.Unmarshal(vr.Body(), &vars)
		for _, v := range vars.Variables {
			fmt.Printf("    %-10s %-8s = %s\n", v.Name, v.Type, v.Value)
		}
	}
	say("continuing")
	if _, err := s.request("continue", godap.ContinueArguments{}); err != nil {
		return err
	}
	fmt.Println("    the service answered:", <-reply)
	if _, err := s.request("disconnect", godap.DisconnectArguments{}); err != nil {
		return err
	}
	say("disconnected; the service keeps running (the debugger cleared its breakpoints)")
	absKdap, _ := filepath.Abs(kdapBin)
	fmt.Printf(`
Do the same from your IDE (the cluster stays up; `+"`make e2e-clean`"+` removes it):

VS Code: `+"`make vsix`"+`, install vscode-extension/kdap.vsix, set "kdap.path" to %s, and in
.vscode/launch.json of this repository:
  {"name": "kdap: gohttp", "type": "kdap", "request": "attach", "target": "pod/%s", "namespace": "%s",
   "kubeconfig": "%s", "image": "%s", "localRoot": "${workspaceFolder}"}

Any DAP client: %s dap --listen 127.0.0.1:4711 --kubeconfig %s --image-go %s

GoLand: %s attach pod/%s -n %s --kubeconfig %s --image-go %s
  then Run > Edit Configurations > Go Remote, host 127.0.0.1, the printed port.
`, absKdap, podName, namespace, c.Kubeconfig(), fixtures.ImportedGoAgentImage,
		rel(repo, kdapBin), c.Kubeconfig(), fixtures.ImportedGoAgentImage,
		rel(repo, kdapBin), podName, namespace, c.Kubeconfig(), fixtures.ImportedGoAgentImage)
	return nil
}

// deploy creates the namespace and the sample pod unless they exist.
func deploy(ctx context.Context, client kubernetes.Interface, node string) error {
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	no, grace := false, int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{"app": podName}},
		Spec: corev1.PodSpec{
			NodeName: node, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "app", Image: fixtures.GoHTTPImage, ImagePullPolicy: corev1.PullNever}},
		},
	}
	existing, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	switch {
	case err == nil && existing.Status.Phase == corev1.PodRunning:
		say("pod %s/%s is already running", namespace, podName)
		return nil
	case err == nil:
		zero := int64(0)
		client.CoreV1().Pods(namespace).Delete(ctx, podName, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		for i := 0; i < 100; i++ {
			if _, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	case !apierrors.IsNotFound(err):
		return err
	}
	say("deploying the sample Go service as pod %s/%s", namespace, podName)
	if _, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		p, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return nil
		}
	}
	return fmt.Errorf("pod %s/%s did not start within 60s", namespace, podName)
}

// session is a minimal scripted DAP client that prints what kdap reports.
type session struct {
	r   *dap.Reader
	w   *dap.Writer
	seq int
}

func (s *session) request(command string, args any) (*dap.Message, error) {
	s.seq++
	msg := map[string]any{"seq": s.seq, "type": "request", "command": command}
	if args != nil {
		msg["arguments"] = args
	}
	raw, _ := json.Marshal(msg)
	if err := s.w.Write(raw); err != nil {
		return nil, err
	}
	want := s.seq
	for {
		m, err := s.next()
		if err != nil {
			return nil, err
		}
		if m.Type == "response" && m.RequestSeq == want {
			if !m.Success {
				return nil, fmt.Errorf("%s failed: %s", command, m.ErrorText())
			}
			return m, nil
		}
	}
}

func (s *session) waitEvent(name string) (*dap.Message, error) {
	for {
		m, err := s.next()
		if err != nil {
			return nil, err
		}
		if m.Type == "event" && m.Event == name {
			return m, nil
		}
	}
}

// next reads one message, printing kdap's progress and output events.
func (s *session) next() (*dap.Message, error) {
	raw, err := s.r.Read()
	if err != nil {
		return nil, err
	}
	m, err := dap.Parse(raw)
	if err != nil {
		return nil, err
	}
	if m.Type == "event" {
		var body struct {
			Message string `json:"message"`
			Output  string `json:"output"`
		}
		json.Unmarshal(m.Body(), &body)
		switch {
		case m.Event == "progressUpdate" && body.Message != "":
			fmt.Println("    kdap:", body.Message)
		case m.Event == "output" && strings.HasPrefix(body.Output, "kdap:"):
			fmt.Println("    " + strings.TrimSpace(body.Output))
		}
	}
	return m, nil
}

func readyLine(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if _, addr, ok := strings.Cut(sc.Text(), "kdap: DAP server listening at: "); ok {
			go io.Copy(io.Discard, r)
			return addr, nil
		}
	}
	return "", fmt.Errorf("kdap exited before it was ready")
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
