// Package localend opens the local endpoints IDEs reach kdap on (`kdap dap
// --listen`, `kdap attach`): a Unix socket only this user may connect to,
// or a loopback TCP port that, where the system tells a connection's user
// (Linux: /proc/net/tcp), takes only this user's connections. Any process
// that gets in may debug the cluster's pods with this user's credentials,
// so nothing else is let in.
package localend

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
)

// UnixPrefix marks a Unix socket's path in a listen address.
const UnixPrefix = "unix:"

// Check says whether addr is a listen address kdap serves on: unix:PATH,
// or HOST:PORT on the loopback. flag names the option, for the message.
func Check(flag, addr string) error {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		if path == "" {
			return fmt.Errorf("%s %q: give the socket's path, e.g. unix:$XDG_RUNTIME_DIR/kdap.sock", flag, addr)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w (want HOST:PORT, e.g. 127.0.0.1:0, or unix:PATH)", flag, addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s %q: kdap serves only on loopback or a Unix socket (anyone reaching the port could debug your cluster's pods); use 127.0.0.1 or unix:PATH", flag, addr)
	}
	return nil
}

// Listen opens addr (see Check). refused, if not nil, hears of each
// connection turned away, with its reason.
func Listen(addr string, refused func(reason string)) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return listenUnix(path)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if !peerUsersKnown() {
		return ln, nil
	}
	if refused == nil {
		refused = func(string) {}
	}
	return &ownUserListener{Listener: ln, refused: refused}, nil
}

// listenUnix listens on a new socket at path that only this user may
// connect to (mode 0600, set before anyone can connect). A socket left
// behind by a kdap that has ended is replaced; a live one is not.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process (another kdap?): choose another path", path)
		}
		os.Remove(path)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// ownUserListener accepts only connections from processes of this user.
type ownUserListener struct {
	net.Listener
	refused func(string)
}

func (l *ownUserListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUser(c)
		switch {
		case err != nil:
			l.refused(fmt.Sprintf("refused a connection from %s: its user cannot be told (%v)", c.RemoteAddr(), err))
		case uid != os.Getuid():
			l.refused(fmt.Sprintf("refused a connection from %s: it comes from user %d, and kdap serves only its own user (%d)", c.RemoteAddr(), uid, os.Getuid()))
		default:
			return c, nil
		}
		c.Close()
	}
}

var errUnknownPeer = errors.New("the connection is not in the kernel's socket table")
