// Package goimage writes kdap's Go debugger image — the agent and Delve,
// built static from this repository's pinned modules — as a docker-archive
// tarball, without a container engine. images/go/Dockerfile builds the same
// image for users with a registry.
package goimage

import (
	"context"

	"github.com/kdap/kdap/images/ocitar"
)

// Arches are the architectures the image is built for (Delve debugs Linux
// programs on both).
var Arches = []string{"amd64", "arm64"}

// Write builds the agent and dlv from the repository at repoDir for this
// machine's architecture and writes the image as ref to file.
func Write(ctx context.Context, repoDir, file, ref string) error {
	return WriteArch(ctx, repoDir, file, ref, "")
}

// WriteArch is Write for the architecture arch (a GOARCH; "" for this
// machine's): the agent and dlv, static, and a /tmp for core dumps.
func WriteArch(ctx context.Context, repoDir, file, ref, arch string) error {
	agent, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "./cmd/kdap-agent", Flags: []string{"-trimpath", "-ldflags=-s -w"}, Arch: arch})
	if err != nil {
		return err
	}
	dlv, err := ocitar.BuildGo(ctx, ocitar.GoBuild{Dir: repoDir, Package: "github.com/go-delve/delve/cmd/dlv", Flags: []string{"-trimpath"}, Arch: arch})
	if err != nil {
		return err
	}
	return ocitar.Write(file, ocitar.Image{
		Ref:  ref,
		Arch: arch,
		Files: []ocitar.File{
			{Path: "/kdap-agent", Mode: 0o755, Data: agent},
			{Path: "/dlv", Mode: 0o755, Data: dlv},
		},
		Dirs:       []ocitar.Dir{{Path: "/tmp", Mode: 0o1777}}, // where Delve writes core dumps
		Entrypoint: []string{"/kdap-agent"},
	})
}
