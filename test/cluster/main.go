// Command cluster runs kdap's single-node test cluster on this machine:
//
//	go run ./test/cluster up        # start (or recover) it; last line is KUBECONFIG=...
//	go run ./test/cluster status    # what runs, and whether the node is Ready
//	go run ./test/cluster load X.tar …  # import image tarballs into the node
//	go run ./test/cluster down      # stop it and remove every trace
//
// The work is done by package localcluster; this file only parses flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/test/cluster/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	var cfg localcluster.Config
	root := &cobra.Command{
		Use:           "cluster",
		Short:         "A real single-node Kubernetes on loopback for kdap's tests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfg.Dir, "dir", "", "harness directory (default $KDAP_CLUSTER_DIR or /var/lib/kdap-test-cluster)")
	root.PersistentFlags().StringVar(&cfg.CacheDir, "cache-dir", "", "where built Kubernetes binaries are kept (default ~/.cache/kdap)")
	handle := func(cmd *cobra.Command) (*localcluster.Cluster, error) {
		c := cfg
		c.Out = cmd.ErrOrStderr()
		return localcluster.New(c)
	}
	root.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Start the cluster (or return at once if it is up); prints KUBECONFIG=PATH last",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := handle(cmd)
				if err != nil {
					return err
				}
				if err := c.Up(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "KUBECONFIG=%s\n", c.Kubeconfig())
				return nil
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Delete pods, stop every component and remove what they left on the machine",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := handle(cmd)
				if err != nil {
					return err
				}
				return c.Down(cmd.Context())
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show each component and whether the node is Ready (exit 1 if not up)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := handle(cmd)
				if err != nil {
					return err
				}
				report, err := c.Status(cmd.Context())
				fmt.Fprint(cmd.OutOrStdout(), report)
				if err != nil {
					return fmt.Errorf("the cluster is not up: %w", err)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "load IMAGE.tar...",
			Short: "Import docker-archive or OCI image tarballs into the node",
			Args:  cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := handle(cmd)
				if err != nil {
					return err
				}
				return c.Load(cmd.Context(), args...)
			},
		},
	)
	return root
}
