//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// stuckAfter is how long one test or benchmark may run before the suite
// calls it stuck. The longest test takes about 2 minutes on the 2-core
// test machine; without this, a call that never returns would spend the
// whole suite's -timeout and CI would show only the tail of a goroutine
// dump, never the test's name.
const stuckAfter = 12 * time.Minute

// watched holds the tests whose watchdog runs, by name.
var watched sync.Map

// startWatchdog starts t's watchdog once (later calls for the same t do nothing):
// should t still run after stuckAfter, the suite prints every goroutine's
// stack and then, last, which test was stuck, and exits.
func startWatchdog(t testing.TB) {
	name := t.Name()
	if _, started := watched.LoadOrStore(name, true); started {
		return
	}
	start := time.Now()
	timer := time.AfterFunc(stuckAfter, func() {
		fmt.Fprintf(os.Stderr, "e2e: %s has run for %s; every goroutine's stack:\n", name, time.Since(start).Round(time.Second))
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		fmt.Fprintf(os.Stderr, "\ne2e: STUCK: %s ran for over %s (started %s); the stacks above show where it waits\n",
			name, stuckAfter, start.Format(time.TimeOnly))
		os.Exit(3)
	})
	t.Cleanup(func() {
		timer.Stop()
		watched.Delete(name)
	})
}
