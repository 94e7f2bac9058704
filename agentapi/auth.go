package agentapi

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// The agent's door. kdap puts the public half of its key (KeyFile) in the
// agent's spec (EnvKey); the agent then opens every connection by writing
// a challenge line — ChallengePrefix and a fresh random nonce in base64 —
// and serves the connection only once the client's first line is an
// ed25519 signature of SignedPrefix+nonce by that key. Nothing secret is
// in the pod: another container of the pod can read the spec and reach the
// agent's port, and still cannot open a session.
const (
	EnvKey          = "KDAP_AGENT_KEY" // base64 ed25519 public key of the kdap that injected the agent
	ChallengePrefix = "KDAP-CHALLENGE "
	SignedPrefix    = "kdap-agent-challenge-v1:"
	nonceSize       = 32
	// ChallengeTimeout bounds the wait for a client's answer.
	ChallengeTimeout = 10 * time.Second
)

// EncodeKey is a public key as EnvKey holds it.
func EncodeKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParseKey reads EnvKey's value.
func ParseKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s is not a base64 ed25519 public key", EnvKey)
	}
	return ed25519.PublicKey(b), nil
}

// Challenge is the agent's side of the door: it writes a challenge to rw
// and reads the answer from r (r buffers rw's reads, and keeps what the
// client sent after its answer). A nil error means the client holds the
// private half of key.
func Challenge(rw io.Writer, r *bufio.Reader, key ed25519.PublicKey) error {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	if _, err := io.WriteString(rw, ChallengePrefix+base64.StdEncoding.EncodeToString(nonce)+"\n"); err != nil {
		return err
	}
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("no answer to the challenge: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(line)
	if err != nil || !ed25519.Verify(key, append([]byte(SignedPrefix), nonce...), sig) {
		return errors.New("the answer to the challenge is not signed by the key of the kdap that injected this agent")
	}
	return nil
}

// Answer is the client's side of the door: it reads the agent's challenge
// from r and writes the signature to w.
func Answer(w io.Writer, r *bufio.Reader, key ed25519.PrivateKey) error {
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("reading the agent's challenge: %w", err)
	}
	enc, ok := strings.CutPrefix(line, ChallengePrefix)
	if !ok {
		return fmt.Errorf("the agent sent %q instead of a challenge (an agent of an older kdap?)", truncate(line, 40))
	}
	nonce, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(nonce) != nonceSize {
		return fmt.Errorf("the agent's challenge is malformed: %q", truncate(line, 60))
	}
	sig := ed25519.Sign(key, append([]byte(SignedPrefix), nonce...))
	_, err = io.WriteString(w, base64.StdEncoding.EncodeToString(sig)+"\n")
	return err
}

// readLine reads one line of at most 200 bytes, without its newline.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() <= 200 {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return strings.TrimSuffix(b.String(), "\r"), nil
		}
		b.WriteByte(c)
	}
	return "", errors.New("line too long")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
