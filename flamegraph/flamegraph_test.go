package flamegraph

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// svgFrames parses an SVG flame graph and returns its frames' tooltips.
func svgFrames(t *testing.T, svg []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var titles []string
	inTitle := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return titles
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			inTitle = v.Name.Local == "title"
		case xml.CharData:
			if inTitle {
				titles = append(titles, string(v))
			}
		case xml.EndElement:
			inTitle = false
		}
	}
}

func TestFlameGraphOfStacks(t *testing.T) {
	var s Stacks
	s.Add([]string{"main", "serve", "handle<&>"}, 30)
	s.Add([]string{"main", "serve"}, 10)
	s.Add([]string{"main", "gc"}, 60)
	var svg bytes.Buffer
	if err := s.WriteSVG(&svg, "test & title"); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(svgFrames(t, svg.Bytes()), "\n")
	want := "main (100 samples, 100.00%)\ngc (60 samples, 60.00%)\nserve (40 samples, 40.00%)\nhandle<&> (30 samples, 30.00%)"
	if got != want {
		t.Errorf("frames:\n%s\nwant:\n%s", got, want)
	}
	var col bytes.Buffer
	s.Collapsed(&col)
	if col.String() != "main;gc 60\nmain;serve 10\nmain;serve;handle<&> 30\n" {
		t.Errorf("collapsed:\n%s", col.String())
	}
	back, err := FromCollapsed(&col)
	if err != nil || back.Samples() != 100 {
		t.Fatalf("FromCollapsed: %v, %d samples", err, back.Samples())
	}
}

// spin.cpuprofile is `node --cpu-prof` (Node.js 20) of a script whose
// outer() calls inner(), which spins for 300 ms.
func TestFromCPUProfile(t *testing.T) {
	f, err := os.Open("testdata/spin.cpuprofile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := FromCPUProfile(f)
	if err != nil {
		t.Fatal(err)
	}
	var col bytes.Buffer
	s.Collapsed(&col)
	var inner int
	for _, line := range strings.Split(col.String(), "\n") {
		if strings.Contains(line, "outer (spin.js:2);inner (spin.js:1)") {
			var n int
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n)
			inner += n
		}
	}
	if inner < s.Samples()/2 {
		t.Errorf("%d of %d samples in outer;inner:\n%s", inner, s.Samples(), col.String())
	}
	if _, err := FromCPUProfile(strings.NewReader("not json")); err == nil {
		t.Error("a file that is not JSON was read as a .cpuprofile")
	}
}

// TestFromJFR records a busy Java program with the JDK here (JFR profile
// settings) and reads the recording: as many execution samples as the
// JDK's own jfr tool counts, most of them in Spin.inner under Spin.outer.
func TestFromJFR(t *testing.T) {
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Skip("no JDK (make test installs openjdk-17-jdk-headless)")
	}
	bin := filepath.Dir(javac)
	dir := t.TempDir()
	src := `public class Spin {
  static long inner(long until) { long n = 0; while (System.nanoTime() < until) n++; return n; }
  static long outer() { return inner(System.nanoTime() + 4_000_000_000L); }
  public static void main(String[] a) { System.out.println(outer()); }
}`
	os.WriteFile(filepath.Join(dir, "Spin.java"), []byte(src), 0o644)
	if out, err := exec.Command(javac, "-d", dir, filepath.Join(dir, "Spin.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	rec := filepath.Join(dir, "spin.jfr")
	if out, err := exec.Command(filepath.Join(bin, "java"), "-XX:StartFlightRecording=settings=profile,filename="+rec, "-cp", dir, "Spin").CombinedOutput(); err != nil {
		t.Fatalf("java: %v\n%s", err, out)
	}
	summary, err := exec.Command(filepath.Join(bin, "jfr"), "summary", rec).CombinedOutput()
	if err != nil {
		t.Fatalf("jfr summary: %v\n%s", err, summary)
	}
	want := -1
	for _, line := range strings.Split(string(summary), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "jdk.ExecutionSample" {
			fmt.Sscan(f[1], &want)
		}
	}
	f, _ := os.Open(rec)
	defer f.Close()
	s, err := FromJFR(f)
	if err != nil {
		t.Fatal(err)
	}
	if s.Samples() != want || want <= 0 {
		t.Errorf("read %d execution samples; jfr summary counts %d", s.Samples(), want)
	}
	var col bytes.Buffer
	s.Collapsed(&col)
	inner := 0
	for _, line := range strings.Split(col.String(), "\n") {
		if strings.Contains(line, "Spin.main;Spin.outer;Spin.inner ") {
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &inner)
		}
	}
	t.Logf("%d execution samples (jfr summary: %d), %d in Spin.main;Spin.outer;Spin.inner", s.Samples(), want, inner)
	if inner < s.Samples()/2 {
		t.Errorf("%d of %d samples in Spin.main;Spin.outer;Spin.inner:\n%s", inner, s.Samples(), col.String())
	}
	if _, err := FromJFR(strings.NewReader("FLR\x00 short")); err == nil {
		t.Error("a cut-short file was read as JFR")
	}
}
