// Command kdap-agent runs inside the ephemeral container kdap injects: see
// package agent. It is configured by environment variables (set by kdap's
// inject package; the debugger image sets where its debugger is), and
// flags for running it by hand.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kdap/kdap/agent"
	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/runtimes"
)

func main() {
	cfg := agent.Config{Log: os.Stderr}
	flag.StringVar(&cfg.Listen, "listen", envOr(agentapi.EnvListen, fmt.Sprintf("127.0.0.1:%d", agentapi.DefaultPort)), "loopback address to serve on")
	flag.StringVar(&cfg.Runtime, "runtime", envOr(agentapi.EnvRuntime, "auto"), "runtime of the target: auto or "+strings.Join(runtimes.Names(), ", "))
	ttl := flag.String("ttl", envOr(agentapi.EnvTTL, "15m"), "idle time before the agent detaches and exits")
	flag.IntVar(&cfg.PID, "pid", 0, "target pid (default: found in the target container)")
	flag.BoolVar(&cfg.Lazy, "lazy", envOr(agentapi.EnvLazy, "false") == "true", "attach no debugger until a session asks for one")
	flag.StringVar(&cfg.ContainerID, "container-id", os.Getenv(agentapi.EnvContainerID), "the target container's ID (containerd://…): only its processes are debugged")
	key := flag.String("key", os.Getenv(agentapi.EnvKey), "base64 ed25519 public key a client must sign the challenge with (empty: no challenge)")
	flag.Parse()
	if *key != "" {
		k, err := agentapi.ParseKey(*key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kdap-agent:", err)
			os.Exit(2)
		}
		cfg.Key = k
	}
	d, err := time.ParseDuration(*ttl)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kdap-agent: bad TTL %q: %v\n", *ttl, err)
		os.Exit(2)
	}
	cfg.TTL = d
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "kdap-agent:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
