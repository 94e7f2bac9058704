package agentapi

import (
	"testing"

	"github.com/kdap/kdap/runtimes"
)

// kdap reads the agent's wrong-runtime error back out of a termination
// message, which holds the end of the agent's log.
func TestWrongRuntimeReadsBack(t *testing.T) {
	msg := "kdap-agent: running as the target's user 65532:0\nkdap-agent: " +
		WrongRuntime(1, "/usr/bin/python3.11", runtimes.Python, runtimes.Go) + "\n"
	rt, said := ParseWrongRuntime(msg)
	if rt != runtimes.Python {
		t.Fatalf("ParseWrongRuntime = %v, want python", rt)
	}
	if want := `target process 1 (/usr/bin/python3.11) is a Python program, not Go: set "runtime": "python" in the launch configuration`; said != want {
		t.Errorf("said %q, want %q", said, want)
	}
	if rt, _ := ParseWrongRuntime("kdap-agent: listen on 127.0.0.1:47474: address in use"); rt != nil {
		t.Errorf("another error read as a wrong runtime: %v", rt)
	}
}
