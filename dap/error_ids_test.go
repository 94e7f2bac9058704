package dap_test

import (
	"testing"

	delvedap "github.com/go-delve/delve/service/dap"

	"github.com/kdap/kdap/dap"
)

// kdap's error ids are its own: none is one Delve (whose responses kdap
// relays) gives another meaning, and none is js-debug's (9222 on).
func TestErrorIDsAreNotTheDebuggers(t *testing.T) {
	delve := map[int]string{
		delvedap.UnsupportedCommand: "UnsupportedCommand", delvedap.InternalError: "InternalError", delvedap.NotYetImplemented: "NotYetImplemented",
		delvedap.FailedToLaunch: "FailedToLaunch", delvedap.FailedToAttach: "FailedToAttach", delvedap.FailedToInitialize: "FailedToInitialize",
		delvedap.DebuggeeIsRunning: "DebuggeeIsRunning", delvedap.DisconnectError: "DisconnectError",
	}
	for id := delvedap.UnableToSetBreakpoints; id <= delvedap.UnableToWriteMemory; id++ {
		delve[id] = "UnableTo…"
	}
	for id := dap.ErrIDAttachFailed; id <= dap.ErrIDInternal; id++ {
		if name, ok := delve[id]; ok {
			t.Errorf("kdap's error id %d is Delve's %s", id, name)
		}
		if id >= 9222 {
			t.Errorf("kdap's error id %d is in js-debug's range", id)
		}
	}
}
