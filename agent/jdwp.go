package agent

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/jdwp"
)

// jdwpLink is the agent's hold on a JVM's JDWP connection. JDWP takes one
// client at a time and cannot be closed once listening, so the agent
// connects as soon as it finds the listener and keeps a connection for its
// whole life: nothing else in the pod can get it meanwhile. A session —
// the Java debug server's JDI, or IntelliJ's or jdb's raw JDWP through the
// front door — is relayed onto it; when the session ends (the client
// leaves, disposes of the VM, falls silent, or its DAP session ends), the
// agent closes the connection, which makes the JVM cancel every event
// request and resume every thread (measured ≈ 60 ms), and connects again
// to the listener the JVM opens anew (on a new port, with address=…:0).
//
// Goroutines: serve runs two copiers and, for a watched client, a silence
// watch; all end with the session.
type jdwpLink struct {
	logf func(string, ...any)
	// listener finds the JVM's JDWP listener port, starting JDWP if need
	// be; the link asks it again for every connection.
	listener func() (int, error)

	mu      sync.Mutex
	jvm     net.Conn // handshaken; nil until acquired again
	port    int
	session func(why string) // ends the session being served; nil when none
}

// errJDWPBusy: another session holds the JVM.
var errJDWPBusy = errors.New("another debugger session is attached to this JVM (JDWP takes one client at a time): end it first")

// acquire connects to the JVM's JDWP listener, unless connected; l.mu is
// held.
func (l *jdwpLink) acquire() error {
	if l.jvm != nil {
		return nil
	}
	var last error
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		port, err := l.listener()
		if err != nil {
			var fatal *jdwpUnavailableError
			if errors.As(err, &fatal) {
				return err
			}
			last = err
			continue
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			last = fmt.Errorf("the JVM says JDWP listens on port %d, but connecting failed: %w", port, err)
			continue
		}
		if err := jdwp.ShakeHands(conn); err != nil {
			conn.Close()
			last = fmt.Errorf("port %d: %w", port, err)
			continue
		}
		if port != l.port {
			l.logf("holding the JVM's JDWP connection (port %d): nothing else in the pod can attach to it while the agent runs", port)
		}
		l.jvm, l.port = conn, port
		return nil
	}
	return fmt.Errorf("cannot connect to the JVM's JDWP listener: %v", last)
}

// jdwpUnavailableError is a listener error that retrying cannot mend.
type jdwpUnavailableError struct{ err error }

func (e *jdwpUnavailableError) Error() string { return e.err.Error() }
func (e *jdwpUnavailableError) Unwrap() error { return e.err }

// ready connects to the JVM now, so that the first session finds it held.
func (l *jdwpLink) ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acquire()
}

// serve relays client — whose handshake the caller has answered — onto the
// held connection until the session ends, then lets the JVM go and
// connects again. A session still ending gets up to 2 s. watch, if not
// nil, ends a client that falls silent (it drops the heartbeats it notes).
func (l *jdwpLink) serve(client net.Conn, watch *silenceWatch) error {
	jvm, end, err := l.begin(client)
	if err != nil {
		return err
	}
	var clientW sync.Mutex // the client gets the JVM's packets and the agent's replies
	reply := func(p jdwp.Packet) {
		clientW.Lock()
		client.Write(p)
		clientW.Unlock()
	}
	done := make(chan struct{}, 2)
	go func() { // client → JVM
		defer func() { done <- struct{}{} }()
		r := bufio.NewReader(client)
		for {
			p, err := jdwp.ReadPacket(r)
			if err != nil {
				end("the client left")
				return
			}
			if watch != nil {
				watch.saw(p.IsHeartbeat())
			}
			switch {
			case p.IsHeartbeat():
				continue
			case p.Is(jdwp.VirtualMachine, jdwp.Dispose):
				reply(jdwp.Reply(p.ID(), 0))
				end("the debugger detached")
				return
			case p.Is(jdwp.VirtualMachine, jdwp.Exit):
				l.logf("refused VirtualMachine.Exit: kdap leaves the target running")
				reply(jdwp.Reply(p.ID(), jdwp.ErrNotImplemented))
				continue
			}
			if _, err := jvm.Write(p); err != nil {
				end("the JVM's connection failed")
				return
			}
		}
	}()
	go func() { // JVM → client
		defer func() { done <- struct{}{} }()
		r := bufio.NewReader(jvm)
		for {
			p, err := jdwp.ReadPacket(r)
			if err != nil {
				end("the JVM closed the connection")
				return
			}
			clientW.Lock()
			_, err = client.Write(p)
			clientW.Unlock()
			if err != nil {
				end("the client left")
				return
			}
		}
	}()
	stop := make(chan struct{})
	if watch != nil {
		go watch.watch(stop, func() { end(fmt.Sprintf("the client sent nothing for %s", agentapi.SilenceLimit)) })
	}
	<-done
	<-done
	close(stop)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.jvm, l.session = nil, nil
	if err := l.acquire(); err != nil {
		l.logf("after the session: %v", err)
	}
	return nil
}

// begin claims the held connection for client, waiting up to 2 s for a
// session that is ending; end ends the session (once).
func (l *jdwpLink) begin(client net.Conn) (jvm net.Conn, end func(string), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for deadline := time.Now().Add(2 * time.Second); l.session != nil; {
		if time.Now().After(deadline) {
			return nil, nil, errJDWPBusy
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		l.mu.Lock()
	}
	if err := l.acquire(); err != nil {
		return nil, nil, err
	}
	jvm = l.jvm
	var once sync.Once
	end = func(why string) {
		once.Do(func() {
			l.logf("JDWP session ended (%s): the JVM resumes with no breakpoints", why)
			jvm.Close()
			client.Close()
		})
	}
	l.session = end
	return jvm, end, nil
}

// endSession ends the session being served, if any (its DAP session is over).
func (l *jdwpLink) endSession(why string) {
	l.mu.Lock()
	end := l.session
	l.mu.Unlock()
	if end != nil {
		end(why)
	}
}

// busy reports whether a session is being served.
func (l *jdwpLink) busy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.session != nil
}

// close lets the JVM go for good (the agent exits).
func (l *jdwpLink) close() {
	l.endSession("the agent is exiting")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.jvm != nil {
		l.jvm.Close()
		l.jvm = nil
	}
}
