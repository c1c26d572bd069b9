// Command benchtool is the Go half of test/bench/scan/run.sh: it packs a
// directory into a one-layer docker-archive, lays out OSV records the way
// osv-scanner's offline mode reads them, compares the two scanners' JSON
// reports and prints the timing table. It is not part of Portcullis.
//
//	benchtool image  -dir DIR -out IMG.tar -tag NAME:TAG
//	benchtool osvdb  -out DIR SRC...        (SRC: directories of OSV *.json)
//	benchtool osvgen -out DIR [-revision N] SRC...  (300,000 records multiplied from SRC)
//	benchtool compare -portcullis P.json -osv O.json [-all-osv A.json]
//	benchtool table  RESULTS                (lines: image tool wall_s rss_kB cpu_s)
//	benchtool status -in STATUS -out STATUS -set SOURCE=VERSION...
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = imageCmd(os.Args[2:])
	case "osvdb":
		err = osvdbCmd(os.Args[2:])
	case "osvgen":
		err = osvgenCmd(os.Args[2:])
	case "compare":
		err = compareCmd(os.Args[2:])
	case "table":
		err = tableCmd(os.Args[2:])
	case "status":
		err = statusCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchtool image|osvdb|osvgen|compare|table|status ...")
	os.Exit(2)
}
