// Package agentdoor is kdap's side of the agent's door (agentapi.Challenge):
// this machine's key, kept in kdap's state directory, and connections to
// an agent that answer its challenge before anything else is sent.
package agentdoor

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/internal/statedir"
)

// KeyFile is where this machine's key is kept: $XDG_STATE_HOME/kdap/agent-key
// (by default ~/.local/state/kdap/agent-key), readable by its user only.
func KeyFile() string { return filepath.Join(statedir.Dir(), "agent-key") }

var (
	loadOnce sync.Once
	loaded   ed25519.PrivateKey
	loadErr  error
)

// Key is this machine's key, made on first use. Agents injected with its
// public half (agentapi.EnvKey) open only to connections signed with it.
func Key() (ed25519.PrivateKey, error) {
	loadOnce.Do(func() { loaded, loadErr = loadOrCreate(KeyFile()) })
	return loaded, loadErr
}

// PublicKey is Key's public half as agentapi.EnvKey holds it.
func PublicKey() (string, error) {
	k, err := Key()
	if err != nil {
		return "", err
	}
	return agentapi.EncodeKey(k.Public().(ed25519.PublicKey)), nil
}

// loadOrCreate reads the key in file (a base64 seed), or writes a new one.
func loadOrCreate(file string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		seed, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("kdap's key %s is damaged: delete it, and kdap makes a new one (agents injected with the old one are then not reused)", file)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading kdap's key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("making kdap's key: %w (set XDG_STATE_HOME to a writable directory)", err)
	}
	// Written under a temporary name and linked into place, so two kdaps
	// starting at once agree on one key.
	tmp, err := os.CreateTemp(filepath.Dir(file), ".agent-key-")
	if err != nil {
		return nil, fmt.Errorf("making kdap's key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(seed) + "\n"); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), file); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreate(file) // another kdap made it first
		}
		return nil, fmt.Errorf("making kdap's key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Dial connects to the agent at addr (a forwarded port) and answers its
// challenge with this machine's key.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	key, err := Key()
	if err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := Open(conn, key)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Open answers the agent's challenge on conn with key; the connection it
// returns reads on after the challenge.
func Open(conn net.Conn, key ed25519.PrivateKey) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(agentapi.ChallengeTimeout))
	br := bufio.NewReader(conn)
	err := agentapi.Answer(conn, br, key)
	conn.SetDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("opening the debugger container's door: %w", err)
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads what the challenge's reader holds first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// HTTP is an HTTP client for the agent's status document and diagnostics:
// each request on a new connection through Dial.
var HTTP = &http.Client{Transport: &http.Transport{
	DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return Dial(ctx, addr) },
	DisableKeepAlives: true,
}}
