//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// buildKubectl builds kubectl from the k8s.io/kubectl module pinned in
// test/kubectl (never the machine's own kubectl).
func buildKubectl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubectl")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(env.repo, "test", "kubectl")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl from test/kubectl: %v\n%s", err, out)
	}
	t.Logf("built kubectl from test/kubectl in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// TestKubectlPlugin: kdap as `kubectl kdap`, run by a kubectl built from
// the k8s.io/kubectl module. kubectl finds kubectl-kdap on PATH; kubectl's
// environment (KUBECONFIG) and its usual flags (-n, --context, --as) mean
// what they mean to kubectl; `kubectl kdap dump` takes a goroutine dump
// through the whole path (inject, forward); completing TARGET through
// kubectl lists the namespace's pods.
func TestKubectlPlugin(t *testing.T) {
	kubectl := buildKubectl(t)
	plugins := t.TempDir()
	for _, name := range []string{"kubectl-kdap", "kubectl_complete-kdap"} {
		if err := os.Symlink(env.kdap, filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	work := t.TempDir()
	run := func(args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "PATH="+plugins+":"+os.Getenv("PATH"), "KUBECONFIG="+env.cluster.Kubeconfig(),
			"XDG_STATE_HOME="+env.state, runtimes.Go.ImageEnv()+"="+fixtures.GoAgentImage)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("kubectl %s (%s, %v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, out)
		return string(out), err
	}
	if out, err := run("plugin", "list"); err != nil || !strings.Contains(out, filepath.Join(plugins, "kubectl-kdap")) {
		t.Errorf("kubectl plugin list does not list kubectl-kdap (%v)", err)
	}
	if out, err := run("kdap", "--help"); err != nil || !strings.Contains(out, "kubectl kdap [command]") {
		t.Errorf("kubectl kdap --help does not name itself kubectl kdap (%v)", err)
	}
	if out, err := run("kdap", "targets", "-n", ns); err != nil || !strings.Contains(out, "gohttp") {
		t.Errorf("kubectl kdap targets -n %s does not list gohttp (%v)", ns, err)
	}
	kubeconfig, err := clientcmd.LoadFromFile(env.cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(work, "gohttp.txt")
	if _, err := run("kdap", "dump", "pod/gohttp", "--namespace", ns, "--context", kubeconfig.CurrentContext, "-o", dump); err != nil {
		t.Errorf("kubectl kdap dump: %v", err)
	} else if b, _ := os.ReadFile(dump); !strings.Contains(string(b), "main.main") {
		t.Errorf("the dump holds no main.main:\n%.500s", b)
	}
	if out, err := run("kdap", "targets", "-n", ns, "--context", "no-such-context"); err == nil || !strings.Contains(out, "no-such-context") {
		t.Errorf("a context that does not exist: err %v, want an error naming it", err)
	}
	nobody := "system:serviceaccount:" + ns + ":nobody"
	if out, err := run("kdap", "targets", "-n", ns, "--as", nobody); err == nil || !strings.Contains(out, nobody) {
		t.Errorf("impersonating %s: err %v, want the API server's refusal naming that user", nobody, err)
	}
	if out, err := run("__complete", "kdap", "attach", "-n", ns, ""); err != nil || !strings.Contains(out, "pod/gohttp\n") {
		t.Errorf("completing kubectl kdap attach -n %s TARGET does not offer pod/gohttp (%v)", ns, err)
	}
	if out, err := run("__complete", "kdap", "attach", "-n", ""); err != nil || !strings.Contains(out, ns+"\n") {
		t.Errorf("completing kubectl kdap attach -n does not offer %s (%v)", ns, err)
	}
}
