package diagnose

import (
	"strings"
	"testing"
)

func TestDefaultRedactionsMaskSecretsAndKeepTheRest(t *testing.T) {
	r, err := NewRedactor(DefaultRedactions)
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Join([]string{
		`		password string = "hunter2"`,
		`      api_key = 'sk-live-123'`,
		`Authorization: Bearer abc.def-ghi`,
		`token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlX2hlcmU`,
		`key AKIAABCDEFGHIJKLMNOP in use`,
		`		count int = 3`,
		`main.handleBusy(...)`,
	}, "\n")
	out := string(r.Redact([]byte(in)))
	for _, secret := range []string{"hunter2", "sk-live-123", "abc.def-ghi", "eyJhbGci", "AKIAABCDEFGHIJKLMNOP"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q left in:\n%s", secret, out)
		}
	}
	for _, kept := range []string{`password string = "[redacted]"`, "count int = 3", "main.handleBusy(...)", "key [redacted] in use"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q not in:\n%s", kept, out)
		}
	}
	if r.Masked < 5 {
		t.Errorf("Masked = %d, want ≥ 5", r.Masked)
	}
	if _, err := NewRedactor([]string{"("}); err == nil || !strings.Contains(err.Error(), `pattern "("`) {
		t.Errorf("a bad pattern: %v", err)
	}
}
