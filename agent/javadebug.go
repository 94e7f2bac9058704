package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
)

func init() { register(runtimes.Java, newJavaDebug) }

// javaDebug debugs a HotSpot JVM: the agent holds the JVM's JDWP connection
// (jdwpLink) and serves two kinds of client on it, one session at a time —
// DAP clients through kdap's Java debug server (Microsoft's java-debug core,
// images/java/server), which reaches the JVM through the agent's Unix
// socket, and raw JDWP clients (IntelliJ, jdb) straight from the front
// door. A JVM started without JDWP gets no sessions (unavailable says
// why), but its diagnostics work (jvm.go).
//
// Goroutines: the Unix socket's accept loop and one relay per JDI
// connection; the debug server's output scanner and waiter while it runs.
type javaDebug struct {
	java, classpath string // the Java that runs the debug server, and its class path
	target          *runtimes.Target
	jdwpInfo        runtimes.JDWP
	noSessions      error // why sessions are refused; nil if JDWP is there
	log             io.Writer
	link            *jdwpLink

	proc    serverProcess // the debug server
	mu      sync.Mutex    // guards the fields below
	sock    net.Listener  // the Unix socket the debug server's JDI connects to
	sockDir string
}

func newJavaDebug(cfg Config, t *runtimes.Target) (debugger, error) {
	java := cfg.setting(runtimes.JavaBinEnv, runtimes.JavaBinDefault)
	cp := cfg.setting(runtimes.JavaDebugCPEnv, runtimes.JavaDebugCPDefault)
	if err := requireFiles(runtimes.Java, java, strings.TrimSuffix(cp, "*")); err != nil {
		return nil, err
	}
	j := &javaDebug{java: java, classpath: cp, target: t, log: cfg.Log, jdwpInfo: runtimes.JavaJDWP(t.PID),
		proc: serverProcess{name: "java-debug", marker: "kdap java-debug listening at ", timeout: 30 * time.Second, log: cfg.Log}}
	j.link = &jdwpLink{logf: j.logf, listener: j.findListener}
	switch {
	case !j.jdwpInfo.Loaded:
		j.noSessions = runtimes.NoJDWPError(t)
	case !j.jdwpInfo.Server:
		j.noSessions = fmt.Errorf("the JVM (pid %d) loaded JDWP to connect out to a debugger (server=n in -agentlib:jdwp=%s): kdap needs JDWP to listen — restart it with %s",
			t.PID, j.jdwpInfo.Options, runtimes.JDWPFlag(runtimes.JavaMajor(t.Version)))
	default:
		t.Warnings = append(t.Warnings, jdwpWarnings(j.jdwpInfo, cfg.TTL)...)
	}
	return j, nil
}

// jdwpWarnings say what JDWP leaves open in the pod.
func jdwpWarnings(info runtimes.JDWP, ttl time.Duration) []string {
	var out []string
	if i := strings.LastIndexByte(info.Address, ':'); i >= 0 { // HOST:PORT; a port alone is the loopback's
		switch strings.Trim(info.Address[:i], "[]") {
		case "127.0.0.1", "localhost", "::1":
		default:
			out = append(out, fmt.Sprintf("JDWP listens beyond the pod's loopback (address=%s): whoever reaches the pod's IP can run code as the JVM's user; use address=127.0.0.1:0", info.Address))
		}
	}
	out = append(out, fmt.Sprintf("once started, JDWP listens until the JVM restarts (HotSpot cannot close it): while kdap's debugger container runs it holds the only JDWP connection; after it exits (idle %s) any process in the pod may connect and run code as the JVM's user", ttl))
	return out
}

// logf writes to the agent's log.
func (j *javaDebug) logf(format string, args ...any) {
	fmt.Fprintf(j.log, "%s kdap-agent: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (j *javaDebug) unavailable() string {
	if j.noSessions == nil {
		return ""
	}
	return j.noSessions.Error()
}

func (j *javaDebug) state() string { return j.proc.state() }

// prepare only checks that sessions are possible: JDWP is started (for
// onjcmd=y) by the first session, not by a diagnostic, and the debug server
// — a JVM of its own, ≈ 40 MB in the pod's memory — by the first DAP
// session.
func (j *javaDebug) prepare(ctx context.Context, logf func(string, ...any)) error {
	return j.noSessions
}

// ensureServer starts the debug server, unless it runs, and returns its
// address.
func (j *javaDebug) ensureServer(ctx context.Context, logf func(string, ...any)) (string, error) {
	if err := j.listenUnix(); err != nil {
		return "", err
	}
	start := time.Now()
	srv, started, err := j.proc.ensure(ctx, logf, func(socket string) *exec.Cmd {
		cmd := exec.Command(j.java, "-XX:+UseSerialGC", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
			"-cp", j.classpath, runtimes.JavaDebugMain, socket)
		cmd.Env = append(os.Environ(), "KDAP_JDWP_SOCKET="+j.sock.Addr().String())
		// The debug server must not outlive the agent (its JDWP connection
		// runs through the agent anyway, which lets the JVM go when it ends).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		return cmd
	}, func(output string) error {
		return fmt.Errorf("the Java debug server exited while starting: %s", output)
	}, nil)
	if err != nil {
		return "", err
	}
	if started {
		logf("the Java debug server (java-debug) serves DAP at %s (started in %s)", srv.addr, time.Since(start).Round(time.Millisecond))
	}
	return srv.addr, nil
}

// listenUnix opens the Unix socket the debug server reaches the JVM by, in
// a directory only the agent's user may enter.
func (j *javaDebug) listenUnix() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.sock != nil {
		return nil
	}
	dir, err := os.MkdirTemp("", "kdap-jdwp-")
	if err != nil {
		return fmt.Errorf("the debugger container needs a writable temporary directory: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "jdwp.sock"))
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	j.sock, j.sockDir = ln, dir
	go j.serveUnix(ln)
	return nil
}

// serveUnix relays each JDI connection of the debug server onto the JVM.
func (j *javaDebug) serveUnix(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			if err := jdwp.ReadHandshake(conn); err != nil {
				return
			}
			if _, err := io.WriteString(conn, jdwp.Handshake); err != nil {
				return
			}
			// Unwatched: the DAP session in front of it is (see connect).
			if err := j.link.serve(conn, nil); err != nil {
				j.logf("the Java debug server's JDWP connection: %v", err)
			}
		}()
	}
}

// connect opens a DAP session on the debug server. When it ends, however
// it ends, the JVM is let go — java-debug itself keeps JDWP (and a
// suspended thread) when its DAP socket drops.
func (j *javaDebug) connect(ctx context.Context, logf func(string, ...any)) (net.Conn, error) {
	if j.noSessions != nil {
		return nil, j.noSessions
	}
	if err := j.link.ready(); err != nil {
		return nil, err
	}
	if j.link.busy() {
		return nil, errJDWPBusy
	}
	addr, err := j.ensureServer(ctx, logf)
	if err != nil {
		return nil, err
	}
	conn, err := dialServer(addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Java debug server: %w", err)
	}
	return &sessionConn{Conn: conn, ended: func() { j.link.endSession("its DAP session ended") }}, nil
}

// sessionConn is a connection that reports its close once.
type sessionConn struct {
	net.Conn
	once  sync.Once
	ended func()
}

func (c *sessionConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.ended)
	return err
}

// serveJDWP serves a raw JDWP client: its handshake is answered once the
// JVM is held and free, then its packets are relayed (heartbeats dropped,
// and its silence watched once it has sent one).
func (j *javaDebug) serveJDWP(ctx context.Context, client net.Conn, logf func(string, ...any)) error {
	if j.noSessions != nil {
		return j.noSessions
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	err := jdwp.ReadHandshake(client)
	client.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	if err := j.link.ready(); err != nil {
		return err
	}
	if j.link.busy() {
		return errJDWPBusy
	}
	if _, err := io.WriteString(client, jdwp.Handshake); err != nil {
		return nil
	}
	return j.link.serve(client, newSilenceWatch())
}

// release waits (at most 2 s) until no session holds the JVM.
func (j *javaDebug) release(logf func(string, ...any)) error {
	j.link.endSession("no client left")
	for start := time.Now(); j.link.busy(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 2*time.Second {
			return errors.New("a JDWP session is still ending after 2s")
		}
	}
	return nil
}

// detach lets go of the JVM and stops the debug server before the agent
// exits. JDWP goes on listening in the JVM: HotSpot cannot close it.
func (j *javaDebug) detach(logf func(string, ...any)) error {
	defer j.proc.hold()()
	err := j.release(logf)
	j.link.close()
	j.mu.Lock()
	sock, dir := j.sock, j.sockDir
	j.sock = nil
	j.mu.Unlock()
	if cmd, _ := j.proc.running(); cmd != nil {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	if sock != nil {
		sock.Close()
		os.RemoveAll(dir)
	}
	if j.noSessions == nil {
		logf("let go of the JVM; its JDWP goes on listening until it restarts (HotSpot cannot close it)")
	}
	return err
}
