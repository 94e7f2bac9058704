package diagnose

import (
	"fmt"
	"regexp"
)

// Redactor masks values in text dumps before they are written: each match
// of a pattern becomes [redacted] — for the key=value pattern, only the
// value.
type Redactor struct {
	patterns []*regexp.Regexp
	Masked   int // values masked so far
}

// DefaultRedactions are the patterns --redact uses: a value after a key
// that names a secret (password, token, api_key, … — then "=", ":" or a Go
// local's "TYPE ="), bearer credentials, JSON web tokens, AWS access key
// ids and PEM private keys.
var DefaultRedactions = []string{
	`(?i)\bbearer\s+[A-Za-z0-9._~+/-]+=*`,
	`\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}`,
	`\bAKIA[0-9A-Z]{16}\b`,
	`-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*-----END [A-Z ]*PRIVATE KEY-----`,
	`(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|authorization)\b[^=:\n]{0,40}?[=:]\s*(["']?)([^\s"',;}]+)`,
}

// NewRedactor compiles the patterns (Go's regexp syntax).
func NewRedactor(patterns []string) (*Redactor, error) {
	r := &Redactor{}
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("redaction pattern %q: %w", p, err)
		}
		r.patterns = append(r.patterns, re)
	}
	return r, nil
}

// Redact returns b with every match masked. A pattern whose last group
// matched masks only that group (the value after its key).
func (r *Redactor) Redact(b []byte) []byte {
	for _, re := range r.patterns {
		b = re.ReplaceAllFunc(b, func(m []byte) []byte {
			sub := re.FindSubmatchIndex(m)
			if n := len(sub); n >= 4 && sub[n-2] >= 0 && sub[n-1] > sub[n-2] {
				if string(m[sub[n-2]:sub[n-1]]) == "[redacted]" {
					return m // masked by an earlier pattern
				}
				r.Masked++
				out := append([]byte{}, m[:sub[n-2]]...)
				out = append(out, "[redacted]"...)
				return append(out, m[sub[n-1]:]...)
			}
			r.Masked++
			return []byte("[redacted]")
		})
	}
	return b
}
