//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/test/fixtures"
)

// TestAutoRuntimeFromTheImageConfig: a Python service whose image name
// names no runtime and whose command is only in its image's configuration
// (the pod spec has none, as most images are run), pulled by the node from
// a real registry. With the runtime left out, kdap reads the image's
// configuration from the registry and adds debugpy on the first try: a
// breakpoint stops. With the registry gone (the configuration unreadable),
// kdap guesses Go from the pod spec, the Go agent finds a Python program,
// and kdap adds the Python debugger by itself, saying so: the breakpoint
// stops there too.
func TestAutoRuntimeFromTheImageConfig(t *testing.T) {
	reg := startRegistry(t)
	tars, err := fixtures.Build(context.Background(), env.repo, t.TempDir(), fixtures.PyHTTPImage)
	if err != nil || len(tars) != 1 {
		t.Fatalf("building %s: %v (%v)", fixtures.PyHTTPImage, err, tars)
	}
	ref := reg.Host + "/shop/api:1"
	reg.pushTarball(t, tars[0], ref)
	ns := newNamespace(t, nil)
	pull := func(p *corev1.Pod) { p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways }
	createPodWith(t, ns, "api", ref, pull)
	createPodWith(t, ns, "offline", ref, pull)
	root, pricing := pyLocalCopy(t)
	line := lineOf(t, pricing, "total = items * unit")
	images := []string{"--image-go", fixtures.GoAgentImage, "--image-python", fixtures.PythonAgentImage}

	// debugOnce runs kdap attach for pod (runtime left out), and a DAP
	// client stops a request at the breakpoint through debugpy.
	debugOnce := func(pod string) *stderrLog {
		t.Helper()
		svc := serviceForward(t, ns, pod)
		log := &stderrLog{}
		start := time.Now()
		cmd, addr, _ := startKdapAttachLogged(t, log, append([]string{"pod/" + pod, "-n", ns}, images...)...)
		t.Logf("%s: kdap attach ready in %s", pod, time.Since(start).Round(time.Millisecond))
		debugpyStop(t, addr, svc, root, pricing, line, 3)
		interrupt(t, cmd, "kdap attach")
		return log
	}

	log := debugOnce("api")
	t.Logf("kdap said: %s", log.wait(t, time.Second, "debugging container app as Python (guessed: its command runs python3"))
	if n := ephemeralCount(t, ns, "api"); n != 1 {
		t.Errorf("pod api has %d debugger containers, want 1 (debugpy's, on the first try)", n)
	}

	reg.Stop()
	log = debugOnce("offline")
	t.Logf("kdap said: %s", log.wait(t, time.Second, "cannot read the configuration of image "+reg.Host+"/shop/api@sha256:", "guessing the runtime from the pod spec"))
	t.Logf("kdap said: %s", log.wait(t, time.Second, "debugging container app as Go (guessed: nothing names another runtime"))
	t.Logf("kdap said: %s", log.wait(t, time.Second, `is a Python program, not Go: set "runtime": "python" to skip the guess; adding the Python debugger instead`))
	if n := ephemeralCount(t, ns, "offline"); n != 2 {
		t.Errorf("pod offline has %d debugger containers, want 2 (the Go one, exited, and debugpy's)", n)
	}
}
