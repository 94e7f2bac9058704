// Package agent is the program kdap runs inside an ephemeral container next
// to the target. It finds the target process, checks its runtime, and
// serves one TCP port on the pod's loopback. Given the key of the kdap that
// injected it, it first challenges every connection (agentapi.Challenge);
// then "GET " gets a JSON status
// document (or a diagnostic of the target), "JDWP" starts a raw JDWP
// session (Java), anything else is piped to the runtime's debugger (Delve
// serves DAP and JSON-RPC on one Unix socket; debugpy's adapter, js-debug and
// kdap's Java debug server serve DAP). It owns the debugger's lifecycle:
// when the last client leaves — by disconnect, a dropped connection, kdap
// being killed, or a client that stops sending heartbeats — breakpoints are
// cleared and the target runs on; after an idle TTL the agent lets go of
// the target and exits. It never imports client-go.
package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
)

// Config is the agent's configuration (from its environment).
type Config struct {
	Listen  string        // loopback address to serve on
	Runtime string        // a runtime's name, or auto (detect)
	TTL     time.Duration // idle time before the agent detaches and exits
	Lazy    bool          // attach no debugger until a session asks for one
	PID     int           // target pid; 0 finds it among the target container's processes
	// ContainerID is the target container's ID (agentapi.EnvContainerID):
	// only processes whose cgroup names it are the target's.
	ContainerID string
	// Key is the public key of the kdap that injected the agent: every
	// connection must first answer a challenge signed with it
	// (agentapi.Challenge). Nil opens the door to any process in the pod.
	Key   ed25519.PublicKey
	Log   io.Writer // the agent's log (its container log)
	Ready func(addr string)
	// Getenv reads the debugger image's settings for the runtime's driver
	// (where its debugger is); nil reads the process environment.
	Getenv func(key string) string
}

// setting is the image's setting key, or def when it is unset.
func (c Config) setting(key, def string) string {
	get := c.Getenv
	if get == nil {
		get = os.Getenv
	}
	if v := get(key); v != "" {
		return v
	}
	return def
}

// Run serves until ctx is done or the agent has been idle for cfg.TTL, then
// detaches the debugger (never killing a debugger that holds breakpoints).
func Run(ctx context.Context, cfg Config) error {
	logf := func(f string, args ...any) { fmt.Fprintf(cfg.Log, "kdap-agent: "+f+"\n", args...) }
	// Listen first: kdap connects the moment the container runs, and a
	// connection refused costs it a whole new port-forward, while one
	// accepted now waits only for what follows (tens of milliseconds).
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another process in the pod uses this port)", cfg.Listen, err)
	}
	served := false
	defer func() {
		if !served {
			ln.Close()
		}
	}()
	procs := &processes{fs: hostProc, containerID: cfg.ContainerID, self: os.Getpid(), fixed: cfg.PID}
	first, err := procs.first()
	if err != nil {
		return err
	}
	if rt := runtimes.Lookup(cfg.Runtime); rt != nil && !rt.NeedsPtrace() {
		// The debugger needs no ptrace: as the target's user the agent may
		// read its /proc files and signal it, with no capability.
		if err := switchToTargetUser(first.pid, logf); err != nil {
			return err
		}
	} else if first.denied {
		return fmt.Errorf("may not inspect process %d (permission denied): the debugger container needs the SYS_PTRACE capability, which a PodSecurity level of baseline or restricted forbids", first.pid)
	}
	rt, target, err := procs.choose(cfg.Runtime)
	if err != nil {
		return err
	}
	dbg, err := newDebugger(cfg, rt, target)
	if err != nil {
		return err
	}
	served = true // serve closes ln
	a := &agent{cfg: cfg, rt: rt, target: target, procs: procs, ln: ln, lastActive: time.Now(), conns: map[net.Conn]bool{}, dbg: dbg,
		debugged: map[int]*debugged{target.PID: {target: target, dbg: dbg}}}
	// Attach the debugger now, before the rest is read and while kdap is
	// still connecting: the first session then finds it ready (Delve's
	// attach is ≈ 150 ms of an attach). A lazy agent, injected for a
	// diagnostic, leaves the target alone.
	go func() {
		if cfg.Lazy {
			return
		}
		if u, ok := a.dbg.(unavailable); ok && u.unavailable() != "" {
			a.logf("no debugger sessions: %s", u.unavailable())
			return
		}
		if err := a.dbg.prepare(ctx, a.logf); err != nil {
			a.logf("debugger: %v (retrying when a client connects)", err)
		}
	}()
	readSources(rt, target, a.logf) // before the status document is served
	a.logf("listening at %s; target pid %d (%s %s, %s); idle TTL %s", ln.Addr(), target.PID, rt.Title, target.Version, target.Exe, cfg.TTL)
	if cfg.Key == nil {
		a.logf("no key given (%s): any process in the pod may connect", agentapi.EnvKey)
	}
	if c := procs.last; len(c.procs) > 1 {
		a.logf("the target container's processes: %s", c.describe())
	}
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	return a.serve(ctx)
}

// debugger is one runtime's debugger as the agent runs it.
type debugger interface {
	// prepare gets ready for the first session (attaches the debugger,
	// starts its server) while kdap sets up its port-forward.
	prepare(ctx context.Context, logf func(string, ...any)) error
	// connect opens the connection one client's session runs on.
	connect(ctx context.Context, logf func(string, ...any)) (net.Conn, error)
	// release leaves the target running with no breakpoints armed, once
	// the last client has gone.
	release(logf func(string, ...any)) error
	// detach lets go of the target before the agent exits.
	detach(logf func(string, ...any)) error
	state() string // "running" or "not started", for the status document
}

// inspect checks the target against the runtime asked for ("auto":
// whichever recognises it). When the target is another runtime's, the error
// names the runtime to set.
func inspect(pid int, runtime string) (*runtimes.Runtime, *runtimes.Target, error) {
	if runtime == "" || runtime == "auto" {
		return runtimes.Detect(pid)
	}
	rt := runtimes.Lookup(runtime)
	if rt == nil {
		return nil, nil, fmt.Errorf("runtime %q is unknown: use one of auto, %s", runtime, strings.Join(runtimes.Names(), ", "))
	}
	t, err := rt.Inspect(pid)
	var other *runtimes.NotThisRuntimeError
	if errors.As(err, &other) {
		if actual, _, derr := runtimes.Detect(pid); derr == nil {
			return nil, nil, errors.New(agentapi.WrongRuntime(pid, other.Exe, actual, rt))
		}
	}
	return rt, t, err
}

// driver makes a runtime's debugger for a target, or says which file of
// the debugger image is missing.
type driver func(cfg Config, t *runtimes.Target) (debugger, error)

// drivers holds each runtime's driver by runtime name; every driver's own
// file registers it (delve.go, debugpy.go, …).
var drivers = map[string]driver{}

func register(rt *runtimes.Runtime, d driver) { drivers[rt.Name] = d }

// newDebugger returns the runtime's debugger, if this image carries it.
func newDebugger(cfg Config, rt *runtimes.Runtime, t *runtimes.Target) (debugger, error) {
	d := drivers[rt.Name]
	if d == nil {
		return nil, fmt.Errorf("this kdap agent cannot debug %s programs: use the debugger image of the same kdap version", rt.Title)
	}
	return d(cfg, t)
}

// requireFiles fails, naming the runtime to set or the image to use, when
// the debugger image lacks one of paths.
func requireFiles(rt *runtimes.Runtime, paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("the target is a %s program, but this debugger image has no %s (%s): set \"runtime\": %q, or \"image\" to kdap's %s debugger image",
				rt.Title, rt.Debugger, p, rt.Name, rt.Title)
		}
	}
	return nil
}

type agent struct {
	cfg    Config
	rt     *runtimes.Runtime
	target *runtimes.Target // the default process, which diagnostics and a session without a preamble are on
	dbg    debugger         // target's debugger
	procs  *processes
	ln     net.Listener
	wg     sync.WaitGroup

	mu         sync.Mutex
	active     int               // clients connected (sessions and diagnostics)
	debugged   map[int]*debugged // by pid: every process a debugger was made for
	lastActive time.Time
	conns      map[net.Conn]bool // open client connections, closed at shutdown
}

// debugged is one process of the target container with its debugger.
type debugged struct {
	target *runtimes.Target
	dbg    debugger
	active int  // sessions on it now
	used   bool // a session reached the debugger since it last released the process
}

func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(a.cfg.Log, "%s kdap-agent: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// serve accepts connections until ctx is done or the TTL passes idle.
func (a *agent) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.watchIdle(ctx, cancel)
	go func() {
		<-ctx.Done()
		a.ln.Close()
		a.mu.Lock()
		for c := range a.conns {
			c.Close()
		}
		a.mu.Unlock()
	}()
	for {
		conn, err := a.ln.Accept()
		if err != nil {
			break
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.handle(ctx, conn)
		}()
	}
	a.wg.Wait()
	a.logf("shutting down")
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for pid, d := range a.debugged {
		if err := d.dbg.detach(a.logf); err != nil {
			errs = append(errs, fmt.Errorf("process %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// watchIdle cancels ctx once no client has been connected for the TTL.
func (a *agent) watchIdle(ctx context.Context, cancel func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		idle := a.active == 0 && time.Since(a.lastActive) > a.cfg.TTL
		a.mu.Unlock()
		if idle {
			a.logf("idle for %s: detaching and exiting", a.cfg.TTL)
			cancel()
			return
		}
	}
}

// handle tells a status request from a debugger session by its first bytes.
func (a *agent) handle(ctx context.Context, conn net.Conn) {
	a.mu.Lock()
	if ctx.Err() != nil {
		a.mu.Unlock()
		conn.Close()
		return
	}
	a.conns[conn] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.conns, conn)
		a.mu.Unlock()
		conn.Close()
	}()
	br := bufio.NewReader(conn)
	if a.cfg.Key != nil {
		conn.SetDeadline(time.Now().Add(agentapi.ChallengeTimeout))
		err := agentapi.Challenge(conn, br, a.cfg.Key)
		conn.SetDeadline(time.Time{})
		if err != nil {
			a.logf("refused client %s: %v", conn.RemoteAddr(), err)
			return
		}
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, err := br.Peek(4)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		return
	}
	client := &bufferedConn{Conn: conn, r: br}
	d := a.debuggedFor(a.target.PID)
	if string(first) == agentapi.ProcessPreamble[:4] {
		if d, err = a.readPreamble(br); err != nil {
			a.logf("client %s: %v", conn.RemoteAddr(), err)
			if first, perr := br.Peek(4); perr == nil && string(first) == "Cont" {
				refuseDAP(client, err)
			}
			return
		}
		if first, err = br.Peek(4); err != nil {
			return
		}
	}
	switch string(first) {
	case "GET ":
		a.serveHTTP(ctx, conn, br)
	case jdwp.Handshake[:4]:
		a.jdwpSession(ctx, client, d)
	default:
		a.session(ctx, client, d, string(first) == "Cont") // DAP's Content-Length
	}
}

// readPreamble reads agentapi.ProcessLine and returns that process with
// its debugger, made for it if it is the first session on it.
func (a *agent) readPreamble(br *bufio.Reader) (*debugged, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, agentapi.ProcessPreamble)))
	if err != nil {
		return nil, fmt.Errorf("bad process preamble %q", strings.TrimSpace(line))
	}
	if d := a.debuggedFor(pid); d != nil {
		return d, nil
	}
	t, err := a.procs.inspectOne(a.rt, pid)
	if err != nil {
		return nil, err
	}
	readSources(a.rt, t, a.logf)
	dbg, err := newDebugger(a.cfg, a.rt, t)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.debugged[pid]; d != nil { // another client made it meanwhile
		return d, nil
	}
	d := &debugged{target: t, dbg: dbg}
	a.debugged[pid] = d
	a.logf("debugging process %d (%s) too", pid, t.Exe)
	return d, nil
}

// readSources fills t's sources where its runtime reads them apart from
// Inspect (Go's DWARF); without them the agent serves on, unmapped.
func readSources(rt *runtimes.Runtime, t *runtimes.Target, logf func(string, ...any)) {
	if rt.ReadSources == nil || t.Sources != nil {
		return
	}
	if err := rt.ReadSources(t); err != nil {
		logf("%v: source paths are not mapped automatically (set them in the launch configuration)", err)
	}
}

// debuggedFor is pid's entry, if a debugger was made for it.
func (a *agent) debuggedFor(pid int) *debugged {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.debugged[pid]
}

// serveHTTP answers GET / with the status document, and GET
// agentapi.DiagnosticsPath+KIND with a diagnostic of the target.
func (a *agent) serveHTTP(ctx context.Context, conn net.Conn, br *bufio.Reader) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if kind, ok := strings.CutPrefix(req.URL.Path, agentapi.DiagnosticsPath); ok {
		a.serveDiagnostic(ctx, conn, kind, req.URL.Query())
		return
	}
	if req.URL.Path != "/" {
		writeHTTP(conn, http.StatusNotFound, "text/plain", strings.NewReader("not found\n"), -1)
		return
	}
	procs, exact := a.processStatus()
	a.mu.Lock()
	st := agentapi.Status{Target: a.target, Listen: a.ln.Addr().String(), TTL: a.cfg.TTL.String(), Sessions: a.active, Debugger: a.dbg.state(),
		Processes: procs, ProcessesExact: exact}
	a.mu.Unlock()
	if u, ok := a.dbg.(unavailable); ok {
		if st.Unavailable = u.unavailable(); st.Unavailable != "" {
			st.Debugger = "unavailable"
		}
	}
	body, _ := json.Marshal(st)
	writeHTTP(conn, http.StatusOK, "application/json", bytes.NewReader(body), int64(len(body)))
}

// writeHTTP writes an HTTP/1.0 response (size -1: unknown, the connection's
// end marks the body's) with extra header lines ("Name: value").
func writeHTTP(conn net.Conn, code int, contentType string, body io.Reader, size int64, header ...string) error {
	head := fmt.Sprintf("HTTP/1.0 %d %s\r\nContent-Type: %s\r\n", code, http.StatusText(code), contentType)
	if size >= 0 {
		head += fmt.Sprintf("Content-Length: %d\r\n", size)
	}
	for _, h := range header {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		return err
	}
	_, err := io.Copy(conn, body)
	return err
}

// session pipes one client to the debugger; when the last client is gone
// the debugger lets the target run on with no breakpoints. A DAP client's
// heartbeats are dropped here, and once it has sent one, its silence ends
// the session (agentapi.SilenceLimit).
func (a *agent) session(ctx context.Context, client net.Conn, d *debugged, isDAP bool) {
	a.counted(client, d, func() bool {
		upstream, err := d.dbg.connect(ctx, a.logf)
		if err != nil {
			a.logf("debugger: %v", err)
			refuseDAP(client, err)
			return false
		}
		relay(client, upstream, isDAP, a.logf)
		return true
	})
}

// jdwpSession serves a raw JDWP client (IntelliJ, jdb) of a debugger that
// takes them (Java's).
func (a *agent) jdwpSession(ctx context.Context, client net.Conn, d *debugged) {
	j, ok := d.dbg.(jdwpServer)
	if !ok {
		refuseJDWP(client, fmt.Errorf("the target is a %s program, not a JVM: connect a client of its debugger", a.target.Runtime))
		return
	}
	a.counted(client, d, func() bool {
		if err := j.serveJDWP(ctx, client, a.logf); err != nil {
			a.logf("JDWP client %s: %v", client.RemoteAddr(), err)
			refuseJDWP(client, err)
			return false
		}
		return true
	})
}

// counted runs one client's session on d, counting it from the start (the
// agent does not reach its idle TTL while a debugger starts for it).
func (a *agent) counted(client net.Conn, d *debugged, run func() (reached bool)) {
	n := a.enter(d)
	a.logf("client %s connected to process %d (%d connected)", client.RemoteAddr(), d.target.PID, n)
	reached := run()
	n = a.leave(d, reached)
	a.logf("client %s left (%d connected)", client.RemoteAddr(), n)
}

// enter counts a client in (a session on d, or with d nil a diagnostic
// being taken).
func (a *agent) enter(d *debugged) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active++
	if d != nil {
		d.active++
	}
	return a.active
}

// leave counts a client out; reached says its session reached d's
// debugger. Once no session is left on d and one has reached its debugger
// since the last release, the debugger releases the process.
func (a *agent) leave(d *debugged, reached bool) int {
	a.mu.Lock()
	a.active--
	n := a.active
	a.lastActive = time.Now()
	release := false
	if d != nil {
		d.active--
		d.used = d.used || reached
		if release = d.active == 0 && d.used; release {
			d.used = false
		}
	}
	a.mu.Unlock()
	if release {
		if err := d.dbg.release(a.logf); err != nil {
			a.logf("releasing process %d: %v", d.target.PID, err)
		}
	}
	return n
}

// jdwpServer is a debugger that also serves raw JDWP clients on the front
// door, told by their handshake; serveJDWP returns when the session is over.
type jdwpServer interface {
	serveJDWP(ctx context.Context, client net.Conn, logf func(string, ...any)) error
}

// unavailable is a debugger that may refuse every session for a reason
// the status document tells (a JVM started without JDWP).
type unavailable interface {
	unavailable() string
}

// refuseJDWP tells a JDWP client why there is no session: JDWP has no
// error for it, so instead of the handshake the client gets a line that
// kdap attach shows (jdb and IntelliJ report a failed handshake).
func refuseJDWP(conn net.Conn, cause error) {
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "kdap: %v\n", cause)
}

// refuseDAP answers a DAP client's first request (initialize) with an
// error saying why there is no debugger, so the IDE shows the reason rather
// than a closed connection. Other protocols just see the connection close.
func refuseDAP(conn net.Conn, cause error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := dap.NewReader(conn)
	raw, err := r.Read()
	for err == nil && isHeartbeat(raw) { // kdap's come before its initialize
		raw, err = r.Read()
	}
	if err != nil {
		return
	}
	req, err := dap.Parse(raw)
	if err != nil || req.Type != "request" {
		return
	}
	msg := cause.Error()
	resp, _ := json.Marshal(map[string]any{
		"seq": 1, "type": "response", "request_seq": req.Seq, "command": req.Command, "success": false, "message": msg,
		"body": map[string]any{"error": map[string]any{"id": 1, "format": msg, "showUser": true}},
	})
	dap.NewWriter(conn).Write(resp)
}

// relay copies between a client and the debugger until either side ends
// (or a DAP client falls silent), then closes both.
func relay(client, upstream net.Conn, isDAP bool, logf func(string, ...any)) {
	done := make(chan struct{}, 2)
	w := newSilenceWatch()
	go func() {
		if isDAP {
			copyDAP(upstream, client, w)
		} else {
			io.Copy(upstream, client)
		}
		done <- struct{}{}
	}()
	go func() { io.Copy(client, upstream); done <- struct{}{} }()
	stop := make(chan struct{})
	go w.watch(stop, func() {
		logf("client %s sent nothing for %s (no heartbeat): ending its session", client.RemoteAddr(), agentapi.SilenceLimit)
		client.Close()
	})
	<-done
	close(stop)
	client.Close()
	upstream.Close()
	<-done
}

// bufferedConn is a net.Conn whose first bytes were peeked.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// no capability at all.
func switchToTargetUser(pid int, logf func(string, ...any)) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := runtimes.ProcessIDs(pid)
	if uid <= 0 {
		return nil
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("switching to the target's user %d:%d: setgroups: %w", uid, gid, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("switching to the target's group %d: %w (the debugger container needs CAP_SETGID, or runAsUser %d)", gid, err, uid)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("switching to the target's user %d: %w (the debugger container needs CAP_SETUID, or runAsUser %d)", uid, err, uid)
	}
	logf("running as the target's user %d:%d", uid, gid)
	return nil
}
