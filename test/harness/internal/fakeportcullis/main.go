// Command fakeportcullis stands in for the portcullis binary in the harness's
// own tests: it honours the `serve` CLI contract (--listen, --data,
// --upstream, --default-upstream, --config), answers GET /readyz, records
// each start in DATA/starts, and shuts down gracefully on SIGTERM (unless
// FAKEPORTCULLIS_IGNORE_TERM=1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		log.Fatalf("usage: %s serve --listen ADDR --data DIR", os.Args[0])
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:5000", "listen address")
	data := fs.String("data", "./portcullis-data", "data directory")
	fs.String("default-upstream", "", "default upstream")
	fs.String("config", "", "config file")
	var upstreams []string
	fs.Func("upstream", "NAME=URL", func(s string) error { upstreams = append(upstreams, s); return nil })
	_ = fs.Parse(os.Args[2:])

	if err := os.MkdirAll(*data, 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(*data, "starts"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	f.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /upstreams", func(w http.ResponseWriter, r *http.Request) {
		for _, u := range upstreams {
			fmt.Fprintln(w, u)
		}
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if os.Getenv("FAKEPORTCULLIS_IGNORE_TERM") == "1" {
		stop()
		signal.Ignore(syscall.SIGTERM) // to test the SIGKILL escalation
		ctx = context.Background()
	}
	go func() {
		<-ctx.Done()
		log.Printf("fakeportcullis: shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("fakeportcullis: listening on %s, data %s", *listen, *data)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Printf("fakeportcullis: bye")
}
