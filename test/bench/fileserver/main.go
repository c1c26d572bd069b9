// Command fileserver serves one directory with net/http's FileServer on a
// loopback address, in a process of its own: the warm blob benchmark's
// baseline that, like portcullis and nginx, does not share the benchmark
// process's scheduler with the clients.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on")
	dir := flag.String("dir", "", "directory to serve")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "fileserver: -dir is required")
		os.Exit(2)
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(os.Stderr, "fileserver: -listen %q: a loopback address is required\n", *listen)
		os.Exit(2)
	}
	srv := &http.Server{Addr: *listen, Handler: http.FileServer(http.Dir(*dir)), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
