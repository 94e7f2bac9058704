// Command publish builds kdap's debugger images and pushes them to a
// registry, without a container engine: REPOSITORY/kdap-RUNTIME:TAG for
// each runtime, an OCI image index of the platforms the image is built for
// (linux/amd64 and linux/arm64; another architecture's Debian files come
// from debian.RootfsFor, its Java runtime is linked from its JDK's modules). It pushes with
// the user's registry credentials (~/.docker/config.json and its
// credential helpers). kdap then finds the images with
// --image-repository REPOSITORY (or $KDAP_IMAGE_REPOSITORY).
//
//	go run ./images/publish [--tag TAG] [--runtimes go,python,node,java] [--arches amd64,arm64] REPOSITORY
//
// Run it from the repository's root (make images does); the Python,
// Node.js and Java images need what `make deps` installs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kdap/kdap/images/debian"
	goimage "github.com/kdap/kdap/images/go"
	javaimage "github.com/kdap/kdap/images/java"
	nodeimage "github.com/kdap/kdap/images/node"
	pyimage "github.com/kdap/kdap/images/python"
	"github.com/kdap/kdap/runtimes"
)

func main() {
	tag := flag.String("tag", runtimes.ImageTag(), "tag of the images (a release's version)")
	only := flag.String("runtimes", strings.Join(runtimes.Names(), ","), "runtimes whose images to build, comma-separated")
	arches := flag.String("arches", "amd64,arm64", "architectures to build each image for, comma-separated (GOARCH names)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./images/publish [--tag TAG] [--runtimes go,python,node,java] [--arches amd64,arm64] REPOSITORY (e.g. registry.example.com/kdap)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := publish(ctx, flag.Arg(0), *tag, strings.Split(*only, ","), strings.Split(*arches, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
}

// publish builds and pushes the named runtimes' images.
func publish(ctx context.Context, repository, tag string, names, arches []string) error {
	repoDir, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repoDir, "cmd", "kdap-agent")); err != nil {
		return fmt.Errorf("run it from the root of kdap's repository (make images does)")
	}
	work, err := os.MkdirTemp("", "kdap-publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	for _, n := range names {
		rt := runtimes.Lookup(strings.TrimSpace(n))
		if rt == nil {
			return fmt.Errorf("runtime %q is unknown: use %s", n, strings.Join(runtimes.Names(), ", "))
		}
		ref := fmt.Sprintf("%s/kdap-%s:%s", strings.TrimSuffix(repository, "/"), rt.Name, tag)
		start := time.Now()
		fmt.Fprintf(os.Stderr, "publish: building %s…\n", ref)
		tars, err := build(ctx, rt, repoDir, filepath.Join(work, rt.Name), ref, arches)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		platforms, digest, err := push(ctx, ref, tars)
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		fmt.Printf("%s@%s (%s) in %s\n", ref, digest, strings.Join(platforms, ", "), time.Since(start).Round(time.Second))
	}
	return nil
}

// build writes the runtime's image for each of arches it is built for, as
// docker-archive tarballs in dir.
func build(ctx context.Context, rt *runtimes.Runtime, repoDir, dir, ref string, arches []string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, a := range arches {
		if !slices.Contains(goimage.Arches, a) {
			return nil, fmt.Errorf("architecture %q: the images are built for %s", a, strings.Join(goimage.Arches, ", "))
		}
	}
	these := func(built []string) []string { // the image's architectures asked for
		var out []string
		for _, a := range built {
			if slices.Contains(arches, a) {
				out = append(out, a)
			}
		}
		return out
	}
	switch rt {
	case runtimes.Go:
		var tars []string
		for _, arch := range these(goimage.Arches) {
			t := filepath.Join(dir, arch+".tar")
			if err := goimage.WriteArch(ctx, repoDir, t, ref, arch); err != nil {
				return nil, err
			}
			tars = append(tars, t)
		}
		return tars, nil
	case runtimes.Python:
		var tars []string
		for _, arch := range these(pyimage.Arches) {
			rootfs, err := debian.Bookworm.RootfsFor(ctx, arch, os.Stderr)
			if err != nil {
				return nil, err
			}
			gdbRootfs, err := debian.Trixie.RootfsFor(ctx, arch, os.Stderr)
			if err != nil {
				return nil, err
			}
			t := filepath.Join(dir, arch+".tar")
			if err := pyimage.WriteArch(ctx, repoDir, rootfs, gdbRootfs, t, ref, arch); err != nil {
				return nil, err
			}
			tars = append(tars, t)
		}
		return tars, nil
	case runtimes.Node:
		var tars []string
		for _, arch := range these(nodeimage.Arches) {
			rootfs, err := debian.Bookworm.RootfsFor(ctx, arch, os.Stderr)
			if err != nil {
				return nil, err
			}
			dist, err := nodeimage.FetchDistFor(ctx, arch, os.Stderr)
			if err != nil {
				return nil, err
			}
			t := filepath.Join(dir, arch+".tar")
			if err := nodeimage.WriteArch(ctx, repoDir, rootfs, dist, t, ref, arch); err != nil {
				return nil, err
			}
			tars = append(tars, t)
		}
		return tars, nil
	case runtimes.Java:
		var tars []string
		for _, arch := range these(javaimage.Arches) {
			system := debian.Bookworm
			if arch != runtime.GOARCH {
				system = javaimage.ForeignJDK // its JDK's modules link that architecture's runtime
			}
			rootfs, err := system.RootfsFor(ctx, arch, os.Stderr)
			if err != nil {
				return nil, err
			}
			t := filepath.Join(dir, arch+".tar")
			if err := javaimage.WriteArch(ctx, repoDir, rootfs, filepath.Join(dir, "java-debug-"+arch), t, ref, arch, os.Stderr); err != nil {
				return nil, err
			}
			tars = append(tars, t)
		}
		return tars, nil
	}
	return nil, fmt.Errorf("publish does not know how to build the %s image", rt.Title)
}

// push pushes the images of tars as one OCI index, with the user's
// credentials, and returns its platforms and digest.
func push(ctx context.Context, ref string, tars []string) ([]string, v1.Hash, error) {
	dst, err := name.ParseReference(ref)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var platforms []string
	for _, t := range tars {
		img, err := tarball.ImageFromPath(t, nil)
		if err != nil {
			return nil, v1.Hash{}, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, v1.Hash{}, err
		}
		config := cf.Config
		config.Labels = map[string]string{
			"org.opencontainers.image.title":   dst.Context().RepositoryStr(),
			"org.opencontainers.image.version": dst.Identifier(),
			"org.opencontainers.image.source":  "https://github.com/kdap/kdap",
		}
		if img, err = mutate.Config(img, config); err != nil {
			return nil, v1.Hash{}, err
		}
		p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		platforms = append(platforms, p.OS+"/"+p.Architecture)
	}
	if err := remote.WriteIndex(dst, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return nil, v1.Hash{}, err
	}
	digest, err := idx.Digest()
	return platforms, digest, err
}
