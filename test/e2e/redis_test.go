package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
)

// writeConfig writes a configuration file into a fresh directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	return writeFileIn(t, t.TempDir(), "portcullis.yaml", yaml)
}

// With store.driver redis the state lives in Redis: a process started on
// another, empty data directory still has the tag cache and the scan.
func TestRedisStateOutlivesTheDataDirectory(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	rs := redisserver.Start(t)
	up := startUpstream(t)
	_, want := pushAlpine(t, up)
	cfg := writeConfig(t, "store:\n  driver: redis\n  redis:\n    addrs: [\""+rs.Addr+"\"]\n")
	args := func(data string) []string {
		importAlpineDB(t, bin, data)
		return []string{"--config", cfg, "--data", data, "--upstream", "docker.io=" + up.URL(), "--default-upstream", "docker.io"}
	}
	first := harness.StartPortcullis(t, bin, args(t.TempDir())...)
	if out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", first.Addr+"/alpine:3.16.9", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput(); err != nil {
		t.Fatalf("crane pull: %v\n%s", err, out)
	}
	type scan struct {
		State     string          `json:"state"`
		Revision  uint64          `json:"revision"`
		Inventory json.RawMessage `json:"inventory"`
		Decisions []struct {
			Verdict string `json:"verdict"`
		} `json:"decisions"`
	}
	var done scan
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := do(t, "GET", first.URL+"/api/v1/scans/"+want.String())
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &done); err != nil {
				t.Fatal(err)
			}
			if done.State != "pending" && len(done.Decisions) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished scan after 60 s: %d %s", r.status, r.body)
		}
	}
	if done.State != "done" || len(done.Inventory) == 0 {
		t.Fatalf("scan: %+v", done)
	}
	if err := first.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Another data directory: nothing of the first process' files.
	up.ResetCounts()
	second := harness.StartPortcullis(t, bin, args(t.TempDir())...)
	r := do(t, "GET", second.URL+"/api/v1/scans/"+want.String())
	var again scan
	if r.status != http.StatusOK || json.Unmarshal(r.body, &again) != nil {
		t.Fatalf("scan after moving to a new data directory: %d %s", r.status, r.body)
	}
	if again.State != "done" || string(again.Inventory) != string(done.Inventory) || len(again.Decisions) == 0 {
		t.Fatalf("scan after moving: %+v, want the stored %+v", again, done)
	}
	if n := up.Count("GET", "/blobs/"); n != 0 {
		t.Errorf("the new process fetched %d blobs: the image was scanned again", n)
	}
	// The tag is answered from the tag cache in Redis (the client's Accept
	// set is part of the key: the same client as the pull): no upstream
	// request for it, its TTL has not passed.
	out, err := exec.Command("go", "tool", "crane", "digest", "--insecure", second.Addr+"/alpine:3.16.9").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want.String() {
		t.Fatalf("crane digest by tag: %v\n%s", err, out)
	}
	if n := up.Count("", "/manifests/3.16.9"); n != 0 {
		t.Errorf("the tag was resolved upstream %d times again: the tag cache did not move with the state", n)
	}
	if second.Logs.Contains(`"msg":"scanned"`) {
		t.Error("the new process scanned the image again")
	}
}

// A configured Redis that does not answer stops the server at start,
// naming it; so does an unknown store driver.
func TestRedisStoreStartErrors(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	rs := redisserver.Start(t)
	rs.Kill()
	tests := []struct {
		name, yaml, want string
	}{
		{"unreachable", "store: {driver: redis, redis: {addrs: [\"" + rs.Addr + "\"]}}", "redis at " + rs.Addr + ": "},
		{"unknown driver", "store: {driver: etcd}", `store.driver: "etcd" must be bolt or redis`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Bounded: the start-up check of Redis gives up after a few seconds.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "serve", "--config", writeConfig(t, tt.yaml), "--data", t.TempDir(), "--listen", "127.0.0.1:0").CombinedOutput()
			if err == nil {
				t.Fatalf("serve exited 0; output:\n%s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output does not say %q:\n%s", tt.want, out)
			}
		})
	}
}
