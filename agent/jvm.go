package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// A HotSpot JVM through its attach socket (hotspot.go): where its JDWP
// listens, and diagnostics that need no JDWP — thread dump, heap dump,
// JFR recording.

// listenerAddress is JDWP's address in the attach command agentProperties'
// output, e.g. sun.jdwp.listenerAddress=dt_socket\:41237 (properties
// escaping; a host may come before the port).
var listenerAddress = regexp.MustCompile(`(?m)^sun\.jdwp\.listenerAddress=(?:dt_socket\\?:)?(?:[^\s]*\\?:)?(\d+)\s*$`)

// jdwpPortFromProperties reads JDWP's listening port from agentProperties.
func jdwpPortFromProperties(props string) (int, bool) {
	m := listenerAddress.FindStringSubmatch(props)
	if m == nil {
		return 0, false
	}
	p, err := strconv.Atoi(m[1])
	return p, err == nil && p != 0
}

// findListener finds the port the JVM's JDWP listens on: from the JVM's own
// agentProperties, after starting JDWP with VM.start_java_debugging when it
// waits for that (onjcmd=y); a port is taken only if the JVM itself holds
// a listening socket on it (with a fixed port, a second JVM in the pod
// reports "started" although its bind failed, and the port is the other
// JVM's). Without the attach mechanism, a fixed address=…:PORT is used.
func (j *javaDebug) findListener() (int, error) {
	pid := j.target.PID
	props, attachErr := hotspotCommand(pid, 5*time.Second, "agentProperties")
	if attachErr == nil {
		if port, ok := jdwpPortFromProperties(props); ok {
			return j.ownedPort(port)
		}
		if j.jdwpInfo.OnJcmd {
			out, err := hotspotCommand(pid, 10*time.Second, "jcmd", "VM.start_java_debugging")
			if err != nil {
				return 0, err
			}
			props, err = hotspotCommand(pid, 5*time.Second, "agentProperties")
			if err != nil {
				return 0, err
			}
			if port, ok := jdwpPortFromProperties(props); ok {
				j.logf("started JDWP in the JVM (VM.start_java_debugging: %s)", firstLine(out))
				return j.ownedPort(port)
			}
			if strings.Contains(out, "already active") {
				// Between two debuggers: the JVM opens its next listener
				// a few milliseconds after the last one left.
				return 0, errors.New("JDWP is active in the JVM but does not listen: another debugger is connected to it (or has just left)")
			}
			why := "its port may be taken: use address=127.0.0.1:0"
			if port := j.fixedPort(); port != 0 {
				if owner, found := portOwner(port); found {
					why = fmt.Sprintf("its port %d is held by %s: use address=127.0.0.1:0", port, processText(owner))
				}
			} else {
				why = "see the JVM's log"
			}
			return 0, &jdwpUnavailableError{fmt.Errorf("the JVM answered VM.start_java_debugging with %q, but JDWP does not listen (address=%s): %s",
				firstLine(out), j.jdwpInfo.Address, why)}
		}
	}
	if port := j.fixedPort(); port != 0 {
		return j.ownedPort(port)
	}
	if attachErr != nil {
		return 0, &jdwpUnavailableError{fmt.Errorf("cannot find where the JVM's JDWP listens: its attach mechanism failed (%v), and its address=%q names no port", attachErr, j.jdwpInfo.Address)}
	}
	return 0, fmt.Errorf("the JVM's JDWP does not listen yet (address=%s)", j.jdwpInfo.Address)
}

// fixedPort is the port of JDWP's address=[HOST:]PORT, 0 if none or 0.
func (j *javaDebug) fixedPort() int {
	a := j.jdwpInfo.Address
	if i := strings.LastIndexByte(a, ':'); i >= 0 {
		a = a[i+1:]
	}
	port, _ := strconv.Atoi(a)
	return port
}

// ownedPort checks that the JVM itself listens on port.
func (j *javaDebug) ownedPort(port int) (int, error) {
	for _, p := range listenersOf(j.target.PID) {
		if p == port {
			return port, nil
		}
	}
	owner, found := portOwner(port)
	if !found {
		return 0, fmt.Errorf("the JVM reports JDWP on port %d, but nothing listens there (yet)", port)
	}
	return 0, &jdwpUnavailableError{fmt.Errorf("JDWP's port %d is held by %s, not by the JVM (pid %d): its JDWP could not bind it; use address=127.0.0.1:0", port, processText(owner), j.target.PID)}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func processText(pid int) string {
	if pid <= 0 {
		return "a process the debugger cannot see"
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return fmt.Sprintf("pid %d (%s)", pid, exe)
}

// diagnose takes a diagnostic of the JVM: threads (Thread.print -l), heap
// (GC.heap_dump: an HPROF file), recording (JFR.start … JFR.dump). Files the JVM writes go to its
// own /tmp (it writes them as its user) and are unlinked as soon as the
// agent has opened them through /proc/PID/root: nothing stays behind, even
// if the transfer fails.
func (j *javaDebug) diagnose(ctx context.Context, kind string, params url.Values, logf func(string, ...any)) (*diagnostic, error) {
	pid := j.target.PID
	switch kind {
	case runtimes.DiagnosticThreads:
		start := time.Now()
		out, err := hotspotCommand(pid, 30*time.Second, "jcmd", "Thread.print -l")
		if err != nil {
			return nil, err
		}
		d := textDiagnostic(out)
		d.pause = time.Since(start) // at most: the safepoint lasts while the JVM prints
		return d, nil
	case runtimes.DiagnosticHeap:
		file := j.tempName("hprof")
		cmd := "GC.heap_dump " + file
		if params.Get("all") == "true" {
			cmd = "GC.heap_dump -all " + file
		}
		logf("heap dump of pid %d to %s (the JVM pauses while it writes it)", pid, file)
		start := time.Now()
		out, err := hotspotCommand(pid, 30*time.Minute, "jcmd", cmd)
		if err != nil {
			return nil, err
		}
		d, err := j.takeFile(file, out, "application/vnd.java.hprof")
		if d != nil {
			d.pause = time.Since(start) // at most: the JVM is stopped while it writes the dump
		}
		return d, err
	case runtimes.DiagnosticRecording:
		d, err := recordingDuration(params)
		if err != nil {
			return nil, err
		}
		return j.record(ctx, d, logf)
	}
	return nil, noDiagnosticError(runtimes.Java, kind)
}

// record runs a JFR recording (settings=profile) for d, or until the
// client leaves, and returns its file; the recording is stopped either way.
func (j *javaDebug) record(ctx context.Context, d time.Duration, logf func(string, ...any)) (*diagnostic, error) {
	pid := j.target.PID
	name := strings.TrimSuffix(path.Base(j.tempName("")), ".")
	out, err := hotspotCommand(pid, time.Minute, "jcmd", "JFR.start name="+name+" settings=profile")
	if err != nil {
		return nil, err
	}
	if !strings.Contains(out, "Started recording") {
		return nil, fmt.Errorf("the JVM did not start a JFR recording: %s", strings.TrimSpace(out))
	}
	defer hotspotCommand(pid, time.Minute, "jcmd", "JFR.stop name="+name)
	logf("JFR recording %s for %s", name, d)
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, fmt.Errorf("the recording was cancelled")
	}
	file := j.tempName("jfr")
	out, err = hotspotCommand(pid, 5*time.Minute, "jcmd", "JFR.dump name="+name+" filename="+file)
	if err != nil {
		return nil, err
	}
	return j.takeFile(file, out, "application/vnd.java.jfr")
}

// tempName is a new file name in the JVM's /tmp (as the JVM sees it).
func (j *javaDebug) tempName(ext string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("/tmp/kdap-%d-%s.%s", j.target.PID, hex.EncodeToString(b), ext)
}

// takeFile opens the file the JVM wrote (file, as the JVM names it) and
// unlinks it; out is what the JVM answered, for the error when there is
// no file.
func (j *javaDebug) takeFile(file, out, contentType string) (*diagnostic, error) {
	local := fmt.Sprintf("/proc/%d/root%s", j.target.PID, file)
	f, err := os.Open(local)
	if err != nil {
		return nil, fmt.Errorf("the JVM wrote no %s: %s", file, strings.TrimSpace(out))
	}
	os.Remove(local)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &diagnostic{body: f, size: fi.Size(), contentType: contentType}, nil
}

// textDiagnostic is a diagnostic the JVM printed.
func textDiagnostic(s string) *diagnostic {
	return &diagnostic{body: io.NopCloser(strings.NewReader(s)), size: int64(len(s)), contentType: "text/plain; charset=utf-8"}
}
