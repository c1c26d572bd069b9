// Package s3server runs a real S3-compatible server for one test: versitygw
// (github.com/versity/versitygw, which the test command builds from the Go
// module proxy) with its posix backend in the test's temporary directory,
// on a free loopback port, stopped when the test ends. Never an in-process
// fake: the cache's shared-storage guarantees are only worth what the
// server behind them really does.
package s3server

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/portcullis/portcullis/test/harness"
)

// Version is the versitygw release the test command installs.
const Version = "v1.8.0"

// Fixed test credentials: the server only listens on loopback and lives
// as long as one test.
const (
	AccessKey = "portcullis-test"
	SecretKey = "portcullis-test-secret"
	Region    = "us-east-1"
)

const (
	// startTimeout bounds the wait for the server to answer.
	startTimeout = 20 * time.Second
	// stopGrace is how long the server may take to exit on SIGTERM.
	stopGrace = 5 * time.Second
	// logTail is how much of its output a failing test shows.
	logTail = 64 << 10
)

// Server is one running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Bucket   string // the bucket Start created
	// Root is the posix backend's directory: bucket B's object K is the
	// file Root/B/K, so tests can see what the server really holds.
	Root string

	proc    *harness.Process
	client  *s3.S3
	buckets atomic.Int64
}

// Binary finds the versitygw binary: on PATH, else in $GOPATH/bin where
// the test command installs it.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found on PATH nor at %s (test/run.sh installs it: GOBIN=$(go env GOPATH)/bin go install github.com/versity/versitygw/cmd/versitygw@%s): %w", p, Version, err)
	}
	return p, nil
}

// Start runs versitygw on a free loopback port until the test ends and
// creates one bucket. A missing binary fails the test: the test command
// installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{Root: filepath.Join(dir, "data")}
	sidecar := filepath.Join(dir, "meta")
	for _, d := range []string{s.Root, sidecar} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	s.Endpoint = "http://" + addr
	// The sidecar keeps object metadata in files, so the backend needs no
	// extended attributes on the test's file system.
	args := []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region,
		"--port", addr, "--quiet", "posix", "--sidecar", sidecar, s.Root}
	proc, err := harness.StartProcess(bin, args, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	t.Cleanup(func() {
		if err := proc.Stop(stopGrace); err != nil && !isSignalExit(err) {
			t.Logf("stop versitygw: %v", err)
		}
		if t.Failed() {
			out := proc.Logs.String()
			if len(out) > logTail {
				out = "[… cut …]\n" + out[len(out)-logTail:]
			}
			t.Logf("versitygw output:\n%s", out)
		}
	})
	sess, err := session.NewSession(aws.NewConfig().
		WithCredentials(credentials.NewStaticCredentials(AccessKey, SecretKey, "")).
		WithEndpoint(s.Endpoint).WithRegion(Region).WithS3ForcePathStyle(true).
		WithHTTPClient(&http.Client{Timeout: 5 * time.Second}).WithMaxRetries(0))
	if err != nil {
		t.Fatalf("s3 client: %v", err)
	}
	s.client = s3.New(sess)
	s.Bucket = s.newBucketWithin(t, startTimeout)
	return s
}

func isSignalExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && !ee.Exited()
}

// NewBucket creates another, empty bucket on the server and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.newBucketWithin(t, 5*time.Second)
}

// newBucketWithin creates a bucket, retrying while the server is starting.
func (s *Server) newBucketWithin(t testing.TB, wait time.Duration) string {
	t.Helper()
	name := fmt.Sprintf("portcullis-test-%d", s.buckets.Add(1))
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.client.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		cancel()
		if err == nil {
			return name
		}
		if !s.proc.Running() {
			t.Fatalf("versitygw exited: %v\n%s", s.proc.ExitErr(), s.proc.Logs.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s: create bucket %s: no success within %v: %v", s.Endpoint, name, wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Parameters are the distribution s3 driver's parameters for the bucket
// Start created.
func (s *Server) Parameters() map[string]any { return s.ParametersFor(s.Bucket) }

// ParametersFor are the distribution s3 driver's parameters for bucket.
// The endpoint is plain http on loopback: "secure: false" keeps the driver
// from asking for TLS, v4 signatures are what versitygw checks, and path
// style keeps the bucket name out of the host name.
func (s *Server) ParametersFor(bucket string) map[string]any {
	return map[string]any{
		"bucket":         bucket,
		"region":         Region,
		"regionendpoint": s.Endpoint,
		"accesskey":      AccessKey,
		"secretkey":      SecretKey,
		"forcepathstyle": true,
		"secure":         false,
		"v4auth":         true,
	}
}

// Objects lists the keys the server holds in bucket, from its directory:
// what is really there, whatever any client believes. Directories and the
// backend's own bookkeeping (dot-directories) are left out.
func (s *Server) Objects(t testing.TB, bucket string) []string {
	t.Helper()
	root := filepath.Join(s.Root, bucket)
	var keys []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path != root {
			// Removed between its listing and its reading: the server
			// deletes an upload's directory once the upload is moved,
			// and tests look while that happens.
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, path)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list bucket %s in %s: %v", bucket, root, err)
	}
	return keys
}
