package runtimes

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const jdk17 = "/usr/lib/jvm/java-17-openjdk-amd64"

// runJava runs the JDK's java with JAVA_TOOL_OPTIONS=options on a class
// that sleeps, and returns its pid once the JVM is up.
func runJava(t *testing.T, options string, args ...string) int {
	t.Helper()
	if _, err := os.Stat(filepath.Join(jdk17, "bin", "javac")); err != nil {
		t.Skipf("no JDK 17 at %s (make test installs openjdk-17-jdk-headless)", jdk17)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "Sleep.java")
	os.WriteFile(src, []byte("public class Sleep { public static void main(String[] a) throws Exception { System.out.println(\"up\"); Thread.sleep(60000); } }"), 0o644)
	if out, err := exec.Command(filepath.Join(jdk17, "bin", "javac"), "-d", dir, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(jdk17, "bin", "java"), append(args, "-cp", dir, "Sleep")...)
	cmd.Env = append(os.Environ(), "JAVA_TOOL_OPTIONS="+options)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 3)
	done := make(chan struct{})
	go func() { out.Read(buf); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the JVM did not start")
	}
	return cmd.Process.Pid
}

func TestInspectJavaAndItsJDWP(t *testing.T) {
	pid := runJava(t, JDWPFlag(17))
	target, err := InspectJava(pid)
	if err != nil {
		t.Fatal(err)
	}
	if JavaMajor(target.Version) != 17 || !strings.HasPrefix(target.Exe, jdk17) || !strings.Contains(target.Detail, "started by kdap on the first session (onjcmd=y") {
		t.Errorf("InspectJava = %+v", target)
	}
	j := JavaJDWP(pid)
	want := JDWP{Loaded: true, Options: strings.TrimPrefix(JDWPFlag(17), "-agentlib:jdwp="), OnJcmd: true, Server: true, Address: "127.0.0.1:0"}
	if diff := cmp.Diff(want, j); diff != "" {
		t.Errorf("JavaJDWP (-want +got):\n%s", diff)
	}

	plain := runJava(t, "")
	if j := JavaJDWP(plain); j.Loaded || j.Options != "" || j.String() != "no JDWP: started without -agentlib:jdwp" {
		t.Errorf("a JVM without JDWP: %+v", j)
	}
	_, err = InspectJava(os.Getpid()) // the test binary: Go, no JVM
	var other *NotThisRuntimeError
	if !errors.As(err, &other) || other.Runtime != javaName {
		t.Errorf("InspectJava of a Go program = %v", err)
	}
}

func TestJDWPFlagAndTheErrorWithoutIt(t *testing.T) {
	for major, onjcmd := range map[int]bool{11: true, 17: true, 21: true, 23: true, 24: false, 25: false} {
		if got := strings.HasSuffix(JDWPFlag(major), ",onjcmd=y"); got != onjcmd {
			t.Errorf("JDK %d: %s", major, JDWPFlag(major))
		}
	}
	for version, major := range map[string]int{"17.0.15": 17, "25.0.5 (Debian)": 25, "1.8.0_392": 8, "": 0} {
		if got := JavaMajor(version); got != major {
			t.Errorf("JavaMajor(%q) = %d, want %d", version, got, major)
		}
	}
	msg := NoJDWPError(&Target{PID: 1, Version: "25.0.5"}).Error()
	for _, want := range []string{"started without JDWP", JDWPFlag(25), "JAVA_TOOL_OPTIONS", "JDK 24 and later have no onjcmd", "kdap dump, kdap heap and kdap profile"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
}

func TestJavaSourceRootsAndAttachArguments(t *testing.T) {
	root := t.TempDir()
	for file, text := range map[string]string{
		"orders/src/main/java/com/shop/Orders.java":        "// c\npackage com.shop;\nclass Orders {}",
		"orders/src/main/java/com/shop/pay/Pay.java":       "package com.shop.pay;\n",
		"orders/src/test/java/com/shop/OrdersTest.java":    "package com.shop;",
		"scripts/Main.java":                                "class Main {}",      // default package
		"misplaced/Wrong.java":                             "package com.other;", // not laid out by package
		"orders/build/generated/com/shop/Generated.java.x": "package com.shop;",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, file)), 0o755)
		os.WriteFile(filepath.Join(root, file), []byte(text), 0o644)
	}
	files, _ := LocalSources(root, javaExtensions, 100)
	roots := JavaSourceRoots(root, files)
	want := []string{filepath.Join(root, "orders/src/main/java"), filepath.Join(root, "orders/src/test/java"), filepath.Join(root, "scripts")}
	if diff := cmp.Diff(want, roots); diff != "" {
		t.Errorf("JavaSourceRoots (-want +got):\n%s", diff)
	}

	out, mapping, err := JavaAttachArguments(json.RawMessage(`{"target":"pod/orders","stepFilters":{"skipSynthetics":true}}`), &Target{}, root, files)
	if err != nil || mapping == nil {
		t.Fatalf("JavaAttachArguments: %v %v", mapping, err)
	}
	var got map[string]any
	json.Unmarshal(out, &got)
	if got["target"] != nil || got["stepFilters"] == nil || got["type"] != "java" || got["request"] != "attach" {
		t.Errorf("attach arguments: %s", out)
	}
	listed := got["kdapSourceFiles"].(map[string]any)
	if diff := cmp.Diff([]any{"com/shop/Orders.java", "com/shop/pay/Pay.java"}, listed[filepath.Join(root, "orders/src/main/java")]); diff != "" {
		t.Errorf("kdapSourceFiles of src/main/java (-want +got):\n%s", diff)
	}

	// The user's sourcePaths win, and their files are listed too.
	explicit := filepath.Join(root, "orders/src/main/java")
	out, mapping, _ = JavaAttachArguments(json.RawMessage(`{"sourcePaths":["`+explicit+`"]}`), &Target{}, "", nil)
	json.Unmarshal(out, &got)
	if mapping != nil || len(got["sourcePaths"].([]any)) != 1 || len(got["kdapSourceFiles"].(map[string]any)[explicit].([]any)) != 2 {
		t.Errorf("explicit sourcePaths: %s (mapping %v)", out, mapping)
	}
}
