// Command kdap attaches an IDE's debugger to a process already running in a
// Kubernetes pod. Commands hold no logic beyond turning flags into typed
// configuration for the packages that do the work.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/kdap/kdap/runtimes"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := os.Getenv(pprofEnv); addr != "" {
		if err := servePprof(addr); err != nil {
			fmt.Fprintln(os.Stderr, "kdap:", err)
			os.Exit(1)
		}
	}
	root := newRootCommand()
	if completing(os.Args[0]) { // kubectl runs kubectl_complete-kdap ARGS… to complete `kubectl kdap ARGS…`
		root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, os.Args[1:]...))
	}
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kdap:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	var logFile string
	root := &cobra.Command{
		Use:           "kdap",
		Short:         "Step-debug a process already running in a Kubernetes pod from your IDE",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return routeClientGoLogs(logFile)
		},
	}
	if name := pluginDisplayName(os.Args[0]); name != "" {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: name}
	}
	root.PersistentFlags().StringVar(&logFile, "log", "", "write client-go's internal log (port-forward retries, API warnings) to this file; off by default")
	root.AddCommand(newDAPCommand(), newAttachCommand(), newTargetsCommand(), newSessionsCommand(), newRuntimesCommand(), newDoctorCommand(), newRBACCommand(), newVersionCommand())
	root.AddCommand(newDiagnoseCommands()...)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kdap's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			version := runtimes.Version // a release's
			if info, ok := debug.ReadBuildInfo(); ok && version == "" {
				version = info.Main.Version // go install …@VERSION, or (devel)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kdap %s\n", version)
			return nil
		},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// routeClientGoLogs sends client-go's klog output (for instance the
// port-forward errors kdap expects and retries) to file, or nowhere, so it
// never mixes with what kdap says to the user.
func routeClientGoLogs(file string) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.Set("logtostderr", "false")
	fs.Set("alsologtostderr", "false")
	fs.Set("stderrthreshold", "FATAL")
	if file == "" {
		klog.SetOutput(io.Discard)
		return nil
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("--log: %w", err)
	}
	klog.SetOutput(f)
	return nil
}
