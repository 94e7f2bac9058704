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
