//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// manualPort is where the manual path's Delve listens in the pod.
const manualPort = 40000

// manualGoAttach is the path people script today without kdap, on pod,
// timed from its patch: a kubectl-debug-style ephemeral container running
// Delve from the image kdap uses (`dlv attach 1 --headless --continue`,
// SYS_PTRACE), a client-go port-forward tried every 10 ms until Delve
// answers a DAP initialize through it (a connection to a port nobody
// listens on ends the whole forward), then a DAP attach and a breakpoint
// at file:line (the binary's own path) straight to Delve. It returns its
// phases: inject (patch → Running), delve-listening (→ initialize
// answered: Delve's attach and DWARF load), debugger-ready (→
// initialized), bp-verified, patch→verified.
func manualGoAttach(b *testing.B, ns, pod, file string, line int) map[string]time.Duration {
	m := startManualGo(b, ns, pod, file, line)
	m.close(b)
	return m.phases
}

// manualSession is a DAP session straight to a Delve of the manual path.
type manualSession struct {
	c      *daptest.Client
	conn   net.Conn
	fwd    *forward.Forward
	file   string
	phases map[string]time.Duration
}

// startManualGo is manualGoAttach up to the breakpoint verified and the
// configuration done; the session stays open.
func startManualGo(b *testing.B, ns, pod, file string, line int) *manualSession {
	ctx := context.Background()
	p := getPod(b, ns, pod)
	name := inject.NewName(p, func() string { return "manual" })
	ec := inject.Container(name, inject.Options{Image: fixtures.GoAgentImage, Target: "app", Ptrace: true})
	ec.Command = append(runtimes.DelveCommand("/dlv", 1, fmt.Sprintf("127.0.0.1:%d", manualPort)), "--continue")
	ec.Env = nil
	for _, kv := range runtimes.DelveEnv {
		k, v, _ := strings.Cut(kv, "=")
		ec.Env = append(ec.Env, corev1.EnvVar{Name: k, Value: v})
	}
	streams, err := forward.FallbackDialer(env.rest, forward.URL(env.clientset, ns, pod)) // kubectl's
	if err != nil {
		b.Fatal(err)
	}
	dialer := forward.Streams(streams)

	start := time.Now()
	if err := inject.Add(ctx, env.clientset, p, ec); err != nil {
		b.Fatal(err)
	}
	if err := inject.WaitRunning(ctx, env.clientset, ns, pod, name, time.Minute); err != nil {
		b.Fatal(err)
	}
	running := time.Now()
	m := &manualSession{file: file}
	for deadline := time.Now().Add(30 * time.Second); m.c == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("manual path: Delve in pod %s/%s never answered through a port-forward (last: %v); its log:\n%s", ns, pod, err, agentLogs(b, ns, pod))
		}
		if m.fwd, err = forward.Start(ctx, dialer, 0, manualPort); err != nil {
			continue
		}
		if m.conn, err = net.Dial("tcp", m.fwd.Addr()); err != nil {
			m.fwd.Close()
			continue
		}
		try := daptest.NewClient(m.conn)
		seq := try.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"})
		if _, ok := try.Poll(func(m *dap.Message) bool { return m.Type == "response" && m.RequestSeq == seq }, 5*time.Second); !ok {
			m.conn.Close()
			m.fwd.Close()
			err = fmt.Errorf("no initialize response")
			continue
		}
		m.c = try
	}
	c := m.c
	c.Timeout = time.Minute
	listening := time.Now()
	attachSeq := c.Send("attach", map[string]any{"mode": "remote"})
	attached := false // Delve answers attach before or after initialized
	c.Expect(b, "initialized event", func(m *dap.Message) bool {
		attached = attached || (m.Type == "response" && m.RequestSeq == attachSeq)
		return m.Type == "event" && m.Event == "initialized"
	})
	ready := time.Now()
	verified := verifyBreakpoint(b, c, attachSeq, attached, file, line, "manual path")
	m.phases = map[string]time.Duration{
		"inject":          running.Sub(start),
		"delve-listening": listening.Sub(running),
		"debugger-ready":  ready.Sub(listening),
		"bp-verified":     verified.Sub(ready),
		"patch→verified":  verified.Sub(start),
	}
	return m
}

// close leaves the target as found (no breakpoint, running) and ends the
// session and its forward.
func (m *manualSession) close(b *testing.B) {
	m.c.ExpectResponse(b, m.c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: m.file}}))
	m.c.ExpectAnyResponse(b, m.c.Send("disconnect", godap.DisconnectArguments{}))
	m.conn.Close()
	m.fwd.Close()
}
