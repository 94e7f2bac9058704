//go:build e2e

// Package e2e tests kdap against a real single-node Kubernetes brought up on
// this machine by test/cluster (left running for the next run; `make
// e2e-clean` tears it down). Run: go test -tags e2e ./test/e2e/...
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/kdap/kdap/test/cluster/localcluster"
	"github.com/kdap/kdap/test/fixtures"
)

// env is the cluster every test in this package runs against.
var env struct {
	cluster   *localcluster.Cluster
	rest      *rest.Config
	clientset *kubernetes.Clientset
	kdap      string // the kdap binary under test
	repo      string // repository root
	state     string // XDG_STATE_HOME of the kdap commands run (its local log)
	registry  *registry
	images    string // where kdap's debugger images are: --image-repository
}

func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.MultiWriter(os.Stderr, &clientGoLog))
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	env.registry.Stop()
	if err := env.cluster.RemoveImages(context.Background(), env.registry.Host+"/"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	}
	os.RemoveAll(filepath.Dir(env.kdap))
	os.Exit(code)
}

// clientGoLog keeps what client-go logged (klog) in this process, for
// tests that check how a port-forward connection failed inside the pod.
var clientGoLog logTail

// logTail keeps the last 256 KiB written to it.
type logTail struct {
	mu sync.Mutex
	b  []byte
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > 256<<10 {
		l.b = l.b[len(l.b)-256<<10:]
	}
	return len(p), nil
}

// Since returns what was logged after mark (a length from Len).
func (l *logTail) Since(mark int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mark > len(l.b) {
		mark = 0
	}
	return string(l.b[mark:])
}

// Len marks the end of the log so far.
func (l *logTail) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.b)
}

// setUp brings the cluster up (if it is not) and loads the fixture images.
func setUp() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the e2e tests start a Kubernetes node and must run as root (sudo go test -tags e2e ./test/e2e/...)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := localcluster.New(localcluster.Config{Out: os.Stderr})
	if err != nil {
		return err
	}
	start := time.Now()
	if err := c.Up(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: cluster up in %s (KUBECONFIG=%s)\n", time.Since(start).Round(10*time.Millisecond), c.Kubeconfig())

	start = time.Now()
	repo, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	outDir, err := os.MkdirTemp("", "kdap-e2e-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(outDir)
	env.repo = repo
	binDir, err := os.MkdirTemp("", "kdap-e2e-bin-") // this run's own: runs may overlap
	if err != nil {
		return err
	}
	env.kdap = filepath.Join(binDir, "kdap")
	env.state = filepath.Join(binDir, "state")
	// Every kdap of the suite — in-process, kdap dap, kdap attach, the
	// VS Code extension's — keeps its key there: one machine's kdap, so
	// each reuses the agents the others injected.
	os.Setenv("XDG_STATE_HOME", env.state)
	build := exec.CommandContext(ctx, "go", "build", "-o", env.kdap, "./cmd/kdap")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build kdap: %v\n%s", err, out)
	}
	tars, err := fixtures.Build(ctx, repo, outDir, append(fixtures.ServiceImages, fixtures.ImportedGoAgentImage)...)
	if err != nil {
		return err
	}
	if err := c.Load(ctx, tars...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: fixture images built and loaded in %s\n", time.Since(start).Round(10*time.Millisecond))

	// kdap's debugger images take the path they take to a user's cluster:
	// kdap's own command pushes them to a registry, the node pulls them.
	start = time.Now()
	if env.registry, err = launchRegistry(binDir, io.Discard); err != nil {
		return err
	}
	env.images = env.registry.Host + "/kdap"
	publish := exec.CommandContext(ctx, "go", "run", "./images/publish", "--arches", runtime.GOARCH, env.images)
	publish.Dir = repo
	if out, err := publish.CombinedOutput(); err != nil {
		env.registry.Stop()
		return fmt.Errorf("go run ./images/publish %s: %v\n%s", env.images, err, out)
	}
	fixtures.UseRegistry(env.images)
	fmt.Fprintf(os.Stderr, "e2e: debugger images built and pushed to %s in %s\n", env.images, time.Since(start).Round(10*time.Millisecond))

	env.cluster = c
	if env.rest, err = c.RESTConfig(); err != nil {
		return err
	}
	env.clientset, err = kubernetes.NewForConfig(env.rest)
	return err
}
