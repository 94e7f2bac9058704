package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"
)

// TestAHaltRightAfterResumeStopsTheTarget is GoLand's first move (halt,
// then set a breakpoint) made the instant the agent has resumed the
// target, each time on a real Delve attached to the gohttp fixture. Delve
// drops a halt that reaches it before its continue begins; were resume to
// return that early, the halt would answer at once, the target would run
// on, and CreateBreakpoint would wait behind the continue for ever.
func TestAHaltRightAfterResumeStopsTheTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	_, pid, dlv := startTarget(t)
	var log syncLog
	logf := func(format string, a ...any) { fmt.Fprintf(&log, format+"\n", a...) }
	d := &delve{bin: dlv, pid: pid, proc: serverProcess{name: "dlv", marker: "API server listening at: ", timeout: 60 * time.Second, log: &log}}
	addr, started, err := d.ensure(context.Background(), logf)
	if err != nil || !started {
		t.Fatalf("ensure: started %v, %v\n%s", started, err, log.String())
	}
	defer func() {
		if err := d.detach(logf); err != nil {
			t.Errorf("detach: %v", err)
		}
	}()
	src, _ := filepath.Abs("../test/fixtures/gohttp/main.go")
	line := lineOf(t, src, "message := fmt.Sprintf")
	for i := range 20 {
		if i > 0 {
			if err := resume(addr); err != nil {
				t.Fatalf("round %d: resume: %v", i, err)
			}
		}
		conn, err := dialServer(addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second)) // a lost halt shows as a timeout, not a hang
		c := rpc2.NewClientFromConn(conn)
		st, err := c.Halt()
		if err != nil {
			t.Fatalf("round %d: halt: %v", i, err)
		}
		if st.Running {
			t.Fatalf("round %d: the target runs after halt", i)
		}
		bp, err := c.CreateBreakpoint(&api.Breakpoint{File: src, Line: line})
		if err != nil {
			t.Fatalf("round %d: a breakpoint right after the halt: %v (the halt was lost: Delve still runs the target)", i, err)
		}
		if _, err := c.ClearBreakpoint(bp.ID); err != nil {
			t.Fatalf("round %d: clear: %v", i, err)
		}
		conn.Close()
	}
}
