// Package layering holds the test that keeps kdap's dependencies pointing
// one way (see DESIGN.md, "Where things live").
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

func TestDependenciesPointOneWay(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/kdap/kdap/cmd/kdap-agent", []string{"k8s.io/client-go", "github.com/spf13/cobra", "github.com/google/go-containerregistry"}},
		{"github.com/kdap/kdap/imageconfig", []string{"k8s.io/", "github.com/kdap/kdap/attach", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/dap", []string{"k8s.io/", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/inject", []string{"github.com/google/go-dap", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/forward", []string{"github.com/google/go-dap", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/runtimes", []string{"k8s.io/", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/agentapi", []string{"k8s.io/", "github.com/go-delve/"}},
		{"github.com/kdap/kdap/agentdoor", []string{"k8s.io/", "github.com/kdap/kdap/attach", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/rbac", []string{"k8s.io/client-go", "github.com/kdap/kdap/attach", "github.com/kdap/kdap/dap", "github.com/spf13/cobra"}},
		{"github.com/kdap/kdap/doctor", []string{"github.com/spf13/cobra", "github.com/kdap/kdap/diagnose"}},
		{"github.com/kdap/kdap/audit", []string{"github.com/kdap/kdap/attach", "github.com/kdap/kdap/dap", "github.com/kdap/kdap/inject", "github.com/google/go-dap"}},
	} {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tc.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tc.forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", tc.pkg, dep)
				}
			}
		}
	}
}
