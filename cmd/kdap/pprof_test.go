package main

import (
	"strings"
	"testing"
)

// TestPprofOnlyOnLoopback: the profiles are never served beyond this
// machine, and a bad address says what to give.
func TestPprofOnlyOnLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "localhost", "nonsense"} {
		err := servePprof(addr)
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("servePprof(%q) = %v, want a refusal naming a loopback address", addr, err)
		}
	}
}
