// Package imageconfig reads what a container image runs — its entrypoint,
// command, environment and labels — from the image's registry, with the
// credentials the node pulls it with: the pod's image pull secrets, then
// the user's own registry credentials (~/.docker/config.json), then none.
// kdap's runtime guess reads it before injecting anything: most images
// say what they run only there, not in the pod spec.
package imageconfig

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Config is the part of an image's configuration that says what it runs.
type Config struct {
	Ref        string // the reference read (a digest when the pod reported one)
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	User       string // USER: "uid[:gid]", a name, or "" (root)
}

// Read reads the configuration of the image ref for the node architecture
// arch (its linux/ARCH image when ref names an index; the first Linux one
// when that is missing). pullSecrets are the pod's .dockerconfigjson
// documents.
func Read(ctx context.Context, ref, arch string, pullSecrets [][]byte) (*Config, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	keys := authn.NewMultiKeychain(secretKeychain(pullSecrets), authn.DefaultKeychain)
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keys)}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		if img, err = pick(idx, arch); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return &Config{Ref: r.String(), Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd, Env: cf.Config.Env, Labels: cf.Config.Labels, User: cf.Config.User}, nil
}

// pick returns the index's image for arch, else its first Linux image.
func pick(idx v1.ImageIndex, arch string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var first *v1.Descriptor
	for i, d := range m.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" || !d.MediaType.IsImage() {
			continue
		}
		if d.Platform.Architecture == arch {
			return idx.Image(d.Digest)
		}
		if first == nil {
			first = &m.Manifests[i]
		}
	}
	if first == nil {
		return nil, fmt.Errorf("the image index holds no Linux image")
	}
	return idx.Image(first.Digest)
}

// Command is what a container of the image runs, as Kubernetes decides it:
// the pod's command replaces the image's entrypoint and command, the pod's
// args replace the image's command.
func (c *Config) Command(podCommand, podArgs []string) []string {
	switch {
	case len(podCommand) > 0:
		return append(append([]string(nil), podCommand...), podArgs...)
	case len(podArgs) > 0:
		return append(append([]string(nil), c.Entrypoint...), podArgs...)
	}
	return append(append([]string(nil), c.Entrypoint...), c.Cmd...)
}

// secretKeychain resolves registries from .dockerconfigjson documents.
type secretKeychain [][]byte

func (s secretKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	for _, doc := range s {
		var cfg struct {
			Auths map[string]struct {
				Auth, Username, Password string
			} `json:"auths"`
		}
		if json.Unmarshal(doc, &cfg) != nil {
			continue
		}
		for server, a := range cfg.Auths {
			if registryHost(server) != host {
				continue
			}
			user, pass := a.Username, a.Password
			if a.Auth != "" {
				if b, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
					user, pass, _ = strings.Cut(string(b), ":")
				}
			}
			return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
		}
	}
	return authn.Anonymous, nil
}

// registryHost is the registry a docker config "auths" key names: a host,
// or a URL such as https://index.docker.io/v1/.
func registryHost(server string) string {
	server = strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	server, _, _ = strings.Cut(server, "/")
	if server == "docker.io" || server == "registry-1.docker.io" {
		return name.DefaultRegistry
	}
	return server
}

// Missing says the registry answered that the image, or its repository,
// does not exist.
func Missing(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// Denied says the registry refused the credentials kdap has (the node
// may pull with others).
func Denied(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden)
}
