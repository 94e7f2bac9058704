package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdap/kdap/dap/daptest"
)

func TestVersionPrintsOneLine(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "kdap ") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("version output %q", out.String())
	}
}

func TestUnknownCommandFails(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"no-such-command"})
	if err := cmd.Execute(); err == nil {
		t.Error("unknown command succeeded")
	}
}

func TestDAPOnStdio(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	trace := filepath.Join(t.TempDir(), "trace")
	o := &DAPOptions{In: inR, Out: outW, Err: io.Discard, TraceFile: trace}
	done := make(chan error, 1)
	go func() { done <- o.Run(context.Background()); outW.Close() }()
	c := daptest.NewClient(struct {
		io.Reader
		io.Writer
		io.Closer
	}{outR, inW, inW})
	c.ExpectResponse(t, c.Send("initialize", map[string]any{"adapterID": "kdap"}))
	if r := c.ExpectAnyResponse(t, c.Send("launch", map[string]any{})); r.Success {
		t.Errorf("launch succeeded: %s", r.Raw)
	}
	c.ExpectResponse(t, c.Send("disconnect", nil))
	if err := <-done; err != nil {
		t.Errorf("kdap dap on stdio ended with %v", err)
	}
	b, _ := os.ReadFile(trace)
	if !strings.Contains(string(b), `IDE ← {"arguments":{"adapterID":"kdap"},"command":"initialize"`) ||
		!strings.Contains(string(b), `IDE → `) {
		t.Errorf("--trace file lacks the traffic:\n%s", b)
	}
}

func TestDAPListenOnlyOnLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "localhost:4711": true, "[::1]:0": true, "0.0.0.0:4711": false, ":4711": false, "10.0.0.1:1": false} {
		err := (&DAPOptions{Listen: addr}).Validate()
		if (err == nil) != ok {
			t.Errorf("--listen %s: %v", addr, err)
		}
	}
}

// As a kubectl plugin (kubectl-kdap on PATH, kubectl_complete-kdap for
// completion), kdap's help says "kubectl kdap".
func TestKubectlPluginHelpSaysKubectlKdap(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/kubectl-kdap":          "kubectl kdap attach TARGET",
		"/usr/local/bin/kubectl_complete-kdap": "kubectl kdap attach TARGET",
		`C:\bin\kubectl-kdap.exe`:              "kubectl kdap attach TARGET",
		"/usr/local/bin/kdap":                  "kdap attach TARGET",
	} {
		saved := os.Args[0]
		os.Args[0] = argv0
		var out bytes.Buffer
		cmd := newRootCommand()
		os.Args[0] = saved
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"attach", "--help"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if usage, _, _ := strings.Cut(strings.SplitN(out.String(), "Usage:\n", 2)[1], "\n"); strings.TrimSpace(usage) != want+" [flags]" {
			t.Errorf("as %s, help says:\n%s\nwant usage %q", argv0, out.String(), want)
		}
	}
}

// kubectl asks kubectl_complete-kdap to complete `kubectl kdap …`.
func TestCompletingOnlyAsKubectlComplete(t *testing.T) {
	for argv0, want := range map[string]bool{
		"/usr/local/bin/kubectl_complete-kdap": true,
		`C:\bin\kubectl_complete-kdap.exe`:     true,
		"/usr/local/bin/kubectl-kdap":          false,
		"kdap":                                 false,
	} {
		if got := completing(argv0); got != want {
			t.Errorf("completing(%q) = %v, want %v", argv0, got, want)
		}
	}
}
