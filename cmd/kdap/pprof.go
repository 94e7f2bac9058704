package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// pprofEnv names a loopback address where kdap serves Go's profiles
// (net/http/pprof), for its benchmarks and for bug reports about its own
// memory or CPU.
const pprofEnv = "KDAP_PPROF_LISTEN"

// servePprof serves the profiles at addr, which must be a loopback address.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s=%q: give a loopback address and port, e.g. 127.0.0.1:6060", pprofEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", pprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go http.Serve(ln, mux)
	return nil
}
