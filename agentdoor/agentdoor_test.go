package agentdoor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTheKeyIsMadeOnceAndKeptPrivate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kdap", "agent-key")
	k1, err := loadOrCreate(file)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file's mode is %v, want 0600", fi.Mode().Perm())
	}
	if dir, _ := os.Stat(filepath.Dir(file)); dir.Mode().Perm() != 0o700 {
		t.Errorf("the key's directory's mode is %v, want 0700", dir.Mode().Perm())
	}
	k2, err := loadOrCreate(file)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Error("a second load made another key")
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 1 {
		t.Errorf("the state directory holds %d files, want the key alone", len(entries))
	}
	os.WriteFile(file, []byte("not a key\n"), 0o600)
	if _, err := loadOrCreate(file); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("a damaged key: %v", err)
	}
}
