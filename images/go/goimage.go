// Package goimage writes kdap's Go debugger image — the agent and Delve,
// built static from this repository's pinned modules — as a docker-archive
// tarball, without a container engine. images/go/Dockerfile builds the same
// image for users with a registry.
package goimage

import (
	"context"

	"github.com/kdap/kdap/images/ocitar"
)

// Write builds the agent and dlv from the repository at repoDir and writes
// the image as ref to file, with a /tmp for core dumps.
func Write(ctx context.Context, repoDir, file, ref string) error {
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}})
	if err != nil {
		return err
	}
	dlv, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "github.com/go-delve/delve/cmd/dlv", Flags: []string{"-trimpath"}})
	if err != nil {
		return err
	}
	return ocitar.Write(file, ocitar.Image{
		Ref: ref,
		Files: []ocitar.File{
			{Path: "/kdap-agent", Mode: 0o755, Data: agent},
			{Path: "/dlv", Mode: 0o755, Data: dlv},
		},
		Dirs:       []ocitar.Dir{{Path: "/tmp", Mode: 0o1777}}, // where Delve writes core dumps
		Entrypoint: []string{"/kdap-agent"},
	})
}
