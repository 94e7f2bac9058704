//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/test/fixtures"
)

// TestAttachToDeploymentPicksTheNewestRunningPod: with no controller
// manager on the test node, the test creates the Deployment object and its
// pods itself; kdap must pick the newest Running pod and say which.
func TestAttachToDeploymentPicksTheNewestRunningPod(t *testing.T) {
	ns := newNamespace(t, nil)
	ctx := context.Background()
	for _, name := range []string{"web-old", "web-new"} {
		createPod(t, ns, name, fixtures.GoHTTPImage)
		patch := []byte(`{"metadata":{"labels":{"tier":"web"}}}`)
		if _, err := env.clientset.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution
	}
	createWebDeployment(t, ns, 2)
	k := startKdap(t)
	c := k.connect(t)
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	seq := c.Send("attach", map[string]any{"target": "deployment/web", "namespace": ns})
	note := c.Expect(t, "a note saying which pod", func(m *dap.Message) bool {
		return m.Event == "output" && strings.Contains(string(m.Raw), "deployment/web: using pod")
	})
	if !strings.Contains(string(note.Raw), "using pod web-new (newest of 2 Running;") {
		t.Errorf("note = %s", note.Raw)
	}
	c.ExpectResponse(t, seq)
	if n := ephemeralCount(t, ns, "web-new"); n != 1 {
		t.Errorf("web-new has %d ephemeral containers, want 1", n)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
}
