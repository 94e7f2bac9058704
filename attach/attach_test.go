package attach

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/imageconfig"
	"github.com/kdap/kdap/runtimes"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		wantErr string
	}{
		{`{"target":"pod/web"}`, ""},
		{`{"target":"web","runtime":"go","agentTTL":"5m"}`, ""},
		{`{}`, `set "target"`},
		{`{"target":"  "}`, `set "target"`},
		{`{"target":"web","runtime":"python","pathMappings":[{"localRoot":"/a","remoteRoot":"/b"}]}`, ""},
		{`{"target":"web","runtime":"cobol"}`, `runtime "cobol" is not one kdap debugs: use "auto" or one of go, python`},
		{`{"target":"web","agentTTL":"soon"}`, "not a duration"},
		{`[1]`, "attach arguments"},
	} {
		_, err := ParseArgs(json.RawMessage(tc.raw))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseArgs(%s) = %v", tc.raw, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseArgs(%s) = %v, want an error containing %q", tc.raw, err, tc.wantErr)
		}
	}
}

func TestTargetRef(t *testing.T) {
	for in, want := range map[string][2]string{
		"web":                            {"pod", "web"},
		"pod/web":                        {"pod", "web"},
		"po/web":                         {"pod", "web"},
		"deployment/api":                 {"deployment", "api"},
		"deploy/api":                     {"deployment", "api"},
		"sts/db":                         {"statefulset", "db"},
		"selector/app=web,tier in (a,b)": {"selector", "app=web,tier in (a,b)"},
	} {
		kind, name, err := targetRef(in)
		if err != nil || kind != want[0] || name != want[1] {
			t.Errorf("targetRef(%q) = %s, %s, %v", in, kind, name, err)
		}
	}
	if _, _, err := targetRef("job/db"); err == nil || !strings.Contains(err.Error(), "selector/LABEL=VALUE") {
		t.Errorf("unsupported kind: %v", err)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"checkout-7d9f", "cart", "catalog", "payments"}
	for want, expect := range map[string]string{
		"checkout": `; did you mean "checkout-7d9f"?`,
		"crat":     `; did you mean "cart"?`,
		"zzzzzz":   "",
	} {
		if got := suggest(context.Background(), func() []string { return names }, want); got != expect {
			t.Errorf("suggest(%q) = %q, want %q", want, got, expect)
		}
	}
}

func TestPickContainer(t *testing.T) {
	pod := func(annotation string, names ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		if annotation != "" {
			p.Annotations = map[string]string{defaultContainerAnnotation: annotation}
		}
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	for _, tc := range []struct {
		pod     *corev1.Pod
		want    string
		result  string
		wantErr string
	}{
		{pod("", "app"), "", "app", ""},
		{pod("", "app", "proxy"), "proxy", "proxy", ""},
		{pod("app", "proxy", "app"), "", "app", ""},
		{pod("", "app", "proxy"), "", "", `has 2 containers (app, proxy): set "container"`},
		{pod("", "app", "proxy"), "db", "", `container "db" is not in pod web; its containers are: app, proxy`},
	} {
		got, err := pickContainer(tc.pod, tc.want)
		if got != tc.result || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("pickContainer(want %q) = %q, %v; want %q, %q", tc.want, got, err, tc.result, tc.wantErr)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"cart", "crat", 2}, {"kitten", "sitting", 3}, {"web", "web-1", 2}} {
		if got := distance(tc.a, tc.b); got != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

func TestChooseProcesses(t *testing.T) {
	st := agentapi.Status{Target: &runtimes.Target{Runtime: "python", PID: 8}, Processes: []agentapi.Process{
		{PID: 1, Command: "/usr/bin/python3 /usr/bin/gunicorn -w 2 app:app", Role: "main"},
		{PID: 8, PPID: 1, Command: "/usr/bin/python3 /usr/bin/gunicorn -w 2 app:app", Role: "worker", Default: true},
		{PID: 9, PPID: 1, Command: "/usr/bin/python3 /usr/bin/gunicorn -w 2 app:app", Role: "worker", Default: true},
		{PID: 20, PPID: 8, Command: "/usr/bin/python3 /tmp/kdap-debugpy-1/debugpy/adapter --port 5678", Role: "other"},
	}}
	for _, tc := range []struct {
		want    string
		pids    []int
		wantErr string
	}{
		{"", []int{8, 9}, ""},
		{"all", []int{1, 8, 9}, ""},
		{"1", []int{1}, ""},
		{" 9 ", []int{9}, ""},
		{"gunicorn", []int{1, 8, 9}, ""},
		{"20", nil, "not a python program"},
		{"77", nil, `no process of the target container matches "process": "77"`},
		{"celery", nil, "1 (main: /usr/bin/python3 /usr/bin/gunicorn -w 2 app:app), 8 (worker"},
	} {
		got, err := chooseProcesses(st, tc.want)
		var pids []int
		for _, p := range got {
			pids = append(pids, p.PID)
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("process %q: err = %v, want one containing %q", tc.want, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(pids, tc.pids) {
			t.Errorf("process %q = %v, %v; want %v", tc.want, pids, err, tc.pids)
		}
	}
}

func TestChildConfigNarrowsTheParent(t *testing.T) {
	raw := []byte(`{"type":"kdap","request":"attach","name":"web","target":"deployment/web","replicas":"all","newReplicas":true,"localRoot":"/src","__sessionId":"x"}`)
	got := childConfig(raw, "pod web-1", map[string]any{"target": "pod/web-1", "namespace": "shop"})
	want := map[string]any{"type": "kdap", "request": "attach", "name": "pod web-1", "target": "pod/web-1", "namespace": "shop", "localRoot": "/src"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("childConfig = %v, want %v", got, want)
	}
}

// The target's user: the pod spec's; under runAsNonRoot without one, the
// image's numeric USER; a named one is an error naming the fix.
func TestTargetUserFromTheImage(t *testing.T) {
	yes := true
	pod := func(uid *int64) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: uid},
			Containers:      []corev1.Container{{Name: "app", Image: "app:1"}}}}
	}
	image := func(user string, err error) (func(Reporter) (*imageconfig.Config, error), *int) {
		reads := 0
		return func(Reporter) (*imageconfig.Config, error) { reads++; return &imageconfig.Config{User: user}, err }, &reads
	}
	var r discard
	spec := int64(1000)
	img, reads := image("65532", nil)
	if uid, _, err := targetUser(pod(&spec), "app", img, r); err != nil || *uid != 1000 || *reads != 0 {
		t.Errorf("the spec's uid: %v, %v, %d image reads", uid, err, *reads)
	}
	for _, tc := range []struct {
		user     string
		uid, gid int64
		wantErr  string
	}{
		{"65532", 65532, -1, ""},
		{"1001:1002", 1001, 1002, ""},
		{"nonroot", 0, 0, `its image's user "nonroot"`},
		{"1001:staff", 0, 0, "set runAsUser"},
	} {
		img, _ := image(tc.user, nil)
		uid, gid, err := targetUser(pod(nil), "app", img, r)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("USER %q: error %v, want %q", tc.user, err, tc.wantErr)
			}
		case err != nil || uid == nil || *uid != tc.uid || (tc.gid < 0) != (gid == nil) || (gid != nil && *gid != tc.gid):
			t.Errorf("USER %q: %v, %v, %v", tc.user, uid, gid, err)
		}
	}
	img, _ = image("", errors.New("registry unreachable"))
	if uid, _, err := targetUser(pod(nil), "app", img, r); uid != nil || err != nil {
		t.Errorf("an unreadable image: %v, %v; want root, no error", uid, err)
	}
}

// discard is a Reporter that drops what it is told.
type discard struct{}

func (discard) Progress(string) {}
func (discard) Output(string)   {}
