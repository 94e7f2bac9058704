package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/localend"
	"github.com/kdap/kdap/runtimes"
)

// clusterFlags are the flags every command that talks to a cluster has.
type clusterFlags struct {
	kubeconfig, context string
	as                  string
	asGroups            []string
	images              map[string]*string // by runtime name: --image-NAME
	imageRepository     string             // where the images not named by --image-NAME are
	agentTTL            time.Duration
}

func (f *clusterFlags) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config); a launch configuration's \"kubeconfig\" wins")
	cmd.Flags().StringVar(&f.context, "context", "", "kubeconfig context (a launch configuration's \"context\" wins)")
	cmd.Flags().StringVar(&f.as, "as", "", "user to impersonate, as with kubectl --as")
	cmd.Flags().StringArrayVar(&f.asGroups, "as-group", nil, "group to impersonate, as with kubectl --as-group; repeatable")
	cmd.Flags().StringVar(&f.imageRepository, "image-repository", envOr("KDAP_IMAGE_REPOSITORY", runtimes.ImageRepository),
		"where kdap's debugger images are ($KDAP_IMAGE_REPOSITORY): REPOSITORY/kdap-RUNTIME:"+runtimes.ImageTag()+", e.g. your registry's mirror of them (make images pushes them there)")
	f.images = map[string]*string{}
	for _, rt := range runtimes.All {
		f.images[rt.Name] = cmd.Flags().String(rt.ImageFlag(), os.Getenv(rt.ImageEnv()),
			fmt.Sprintf("debugger image for %s targets ($%s; default %s)", rt.Title, rt.ImageEnv(), "REPOSITORY/kdap-"+rt.Name+":"+runtimes.ImageTag()))
	}
	cmd.Flags().DurationVar(&f.agentTTL, "agent-ttl", 15*time.Minute, "idle time after which an injected debugger detaches and exits")
}

func (f *clusterFlags) config() attach.Config {
	images := map[string]string{}
	repository := firstNonEmpty(f.imageRepository, runtimes.ImageRepository)
	for _, rt := range runtimes.All {
		if flag := f.images[rt.Name]; flag != nil && *flag != "" {
			images[rt.Name] = *flag
		} else {
			images[rt.Name] = rt.ImageIn(repository)
		}
	}
	return attach.Config{Kubeconfig: f.kubeconfig, Context: f.context, As: f.as, AsGroups: f.asGroups, Images: images, AgentTTL: f.agentTTL}
}

// DAPOptions are the options of `kdap dap`.
type DAPOptions struct {
	clusterFlags
	Listen         string // empty: serve one session on stdin/stdout
	TokenFile      string // write a per-run token here and ask every attach for it
	AllowTerminate bool
	TraceFile      string
	Out, Err       io.Writer
	In             io.Reader
}

func newDAPCommand() *cobra.Command {
	o := &DAPOptions{Out: os.Stdout, Err: os.Stderr, In: os.Stdin}
	cmd := &cobra.Command{
		Use:   "dap",
		Short: "Serve the Debug Adapter Protocol: on stdin/stdout for one IDE session, or on --listen for many",
		Long: `kdap dap is the debug adapter an IDE talks to. Each attach request names a target
(pod/NAME, deployment/NAME or a pod name); kdap injects a debugger into that pod as an
ephemeral container, port-forwards to it and relays DAP. Several sessions can share one
kdap dap --listen process. Disconnecting leaves the target running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&o.Listen, "listen", "", "serve DAP on this loopback address (e.g. 127.0.0.1:4711, port 0 picks one; on Linux only your user's connections are taken) or Unix socket (unix:PATH, yours alone) instead of stdin/stdout")
	cmd.Flags().StringVar(&o.TokenFile, "token-file", "", "with --listen: write a new token to this file (mode 0600) and refuse every attach whose \"token\" is not it")
	cmd.Flags().BoolVar(&o.AllowTerminate, "allow-terminate", false, "let a disconnect with terminateDebuggee stop the target (refused by default)")
	cmd.Flags().StringVar(&o.TraceFile, "trace", "", "append every DAP message, both directions, to this file")
	return cmd
}

// Validate checks the options.
func (o *DAPOptions) Validate() error {
	if o.Listen == "" {
		if o.TokenFile != "" {
			return errors.New("--token-file needs --listen: on stdin/stdout only the IDE that started kdap talks to it")
		}
		return nil
	}
	return localend.Check("--listen", o.Listen)
}

// Run serves until ctx is done (or, on stdio, the IDE disconnects).
func (o *DAPOptions) Run(ctx context.Context) error {
	opts := dap.Options{AllowTerminate: o.AllowTerminate}
	if o.TraceFile != "" {
		f, err := os.OpenFile(o.TraceFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		opts.Trace = &lockedWriter{w: f}
	}
	attacher := &attach.Attacher{Config: o.config()}
	if o.Listen == "" {
		return dap.Serve(ctx, newStdio(o.In, o.Out), attacher, opts)
	}
	if o.TokenFile != "" {
		token, err := writeToken(o.TokenFile)
		if err != nil {
			return err
		}
		defer os.Remove(o.TokenFile)
		attacher.Config.Token = token
	}
	ln, err := localend.Listen(o.Listen, func(reason string) { fmt.Fprintln(o.Err, "kdap:", reason) })
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "kdap: DAP server listening at: %s\n", listenAddr(ln))
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dap.Serve(ctx, conn, attacher, opts); err != nil && ctx.Err() == nil {
				fmt.Fprintf(o.Err, "kdap: session from %s: %v\n", conn.RemoteAddr(), err)
			}
		}()
	}
}

// writeToken writes a new random token to file, readable by this user only.
func writeToken(file string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	os.Remove(file) // a new file, so that its mode is ours
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return token, nil
}

// listenAddr is the address a listener serves at, as --listen takes it.
func listenAddr(ln net.Listener) string {
	if ln.Addr().Network() == "unix" {
		return localend.UnixPrefix + ln.Addr().String()
	}
	return ln.Addr().String()
}

// stdio is the IDE connection of an adapter the IDE started. A read from
// stdin cannot be interrupted, so a pump copies stdin into a pipe whose
// reading end Close can release; the pump ends at stdin's EOF (or with the
// process, which exits when the session is over).
type stdio struct {
	*io.PipeReader
	io.Writer
}

func newStdio(in io.Reader, out io.Writer) stdio {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, in)
		pw.CloseWithError(err)
	}()
	return stdio{PipeReader: pr, Writer: out}
}

func (s stdio) Close() error { return s.PipeReader.Close() }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
