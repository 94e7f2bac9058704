package imageconfig

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestCommandIsWhatKubernetesRuns(t *testing.T) {
	c := &Config{Entrypoint: []string{"/usr/bin/python3"}, Cmd: []string{"app.py"}}
	for _, tc := range []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/usr/bin/python3", "app.py"}},
		{nil, []string{"other.py"}, []string{"/usr/bin/python3", "other.py"}},
		{[]string{"/bin/app"}, nil, []string{"/bin/app"}},
		{[]string{"/bin/app"}, []string{"-v"}, []string{"/bin/app", "-v"}},
	} {
		if got := c.Command(tc.command, tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("command %q args %q: %q, want %q", tc.command, tc.args, got, tc.want)
		}
	}
}

// Read picks the node's platform out of a multi-arch index, and the first
// Linux image when the index lacks it.
func TestReadPicksThePlatformOfAnIndex(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	image := func(arch, entry string) v1.Image {
		img, err := mutate.Config(empty.Image, v1.Config{Entrypoint: []string{entry}, Env: []string{"ARCH=" + arch}})
		if err != nil {
			t.Fatal(err)
		}
		img, _ = mutate.ConfigFile(img, mustConfig(t, img, arch))
		return img
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: image("amd64", "/amd64/app"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: image("arm64", "/arm64/app"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	ref, _ := name.ParseReference(host + "/shop/api:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	for arch, want := range map[string]string{"arm64": "/arm64/app", "amd64": "/amd64/app", "s390x": "/amd64/app"} {
		c, err := Read(context.Background(), ref.String(), arch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Entrypoint) != 1 || c.Entrypoint[0] != want {
			t.Errorf("linux/%s: entrypoint %q, want %q", arch, c.Entrypoint, want)
		}
	}
}

func mustConfig(t *testing.T, img v1.Image, arch string) *v1.ConfigFile {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	return cf
}

// The pod's pull secrets authenticate to the registry they name, whether
// keyed by host or by URL, with "auth" or a user name and password.
func TestPullSecretsAuthenticateTheirRegistry(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("robot:s3cret"))
	keys := secretKeychain{
		[]byte(`{"auths":{"registry.example.com:5000":{"auth":"` + auth + `"}}}`),
		[]byte(`{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}`),
	}
	for ref, want := range map[string]authn.AuthConfig{
		"registry.example.com:5000/shop/api:1": {Username: "robot", Password: "s3cret"},
		"python:3.11":                          {Username: "hub", Password: "pw"},
		"ghcr.io/other/image:1":                {},
	} {
		r, _ := name.ParseReference(ref)
		a, err := keys.Resolve(r.Context())
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if got.Username != want.Username || got.Password != want.Password {
			t.Errorf("%s: %q/%q, want %q/%q", ref, got.Username, got.Password, want.Username, want.Password)
		}
	}
}
