package perfprofile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestRecordAGoServiceWhileItWorks: a real Go program (the e2e fixture)
// spins in main.busyWork while it is sampled; the profile, read back by
// the pprof library and by `go tool pprof -top`, puts most samples there.
func TestRecordAGoServiceWhileItWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Go program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gohttp")
	if out, err := exec.Command("go", "build", "-o", bin, "../test/fixtures/gohttp").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixture did not serve")
		}
	}
	busy := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/busy?ms=2500")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		busy <- err
	}()
	time.Sleep(100 * time.Millisecond)
	before := cpuTicks(t, cmd.Process.Pid)
	s, err := Record(context.Background(), cmd.Process.Pid, Options{Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	used := cpuTicks(t, cmd.Process.Pid) - before // 10 ms each (USER_HZ 100): one sample's worth
	var buf bytes.Buffer
	if err := s.WritePprof(&buf); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var total, inBusy int64
	for _, sm := range p.Sample {
		total += sm.Value[0]
		for _, loc := range sm.Location {
			if loc.Line[0].Function.Name == "main.busyWork" {
				inBusy += sm.Value[0]
				break
			}
		}
	}
	t.Logf("%d samples from %d threads in %s (%d lost), %d in main.busyWork; the process used %d0 ms of CPU", total, s.Threads, s.Duration.Round(time.Millisecond), s.Lost, inBusy, used)
	// One sample per 10 ms of CPU the process used, however much the
	// machine gave it.
	if used < 10 || total < used/2 || total > used*2 || inBusy < total/2 {
		t.Errorf("%d samples for %d0 ms of CPU, %d of them in main.busyWork: want one per 10 ms, most in busyWork", total, used, inBusy)
	}
	file := filepath.Join(dir, "cpu.pprof")
	os.WriteFile(file, buf.Bytes(), 0o644)
	top, err := exec.Command("go", "tool", "pprof", "-top", file).CombinedOutput()
	if err != nil || !strings.Contains(string(top), "main.busyWork") {
		t.Errorf("go tool pprof -top: %v\n%s", err, top)
	}
	if err := <-busy; err != nil {
		t.Errorf("the busy request: %v", err)
	}
}

// cpuTicks is the user and system CPU time pid has used, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:])) // after "pid (comm) "
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return utime + stime
}
