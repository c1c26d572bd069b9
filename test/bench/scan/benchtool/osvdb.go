package main

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// osvdbCmd lays out OSV records as osv-scanner reads them offline:
// OUT/osv-scalibr/<Ecosystem>/all.zip, one zip per base ecosystem ("Debian"
// for "Debian:12"), a record going into every ecosystem it names. Portcullis
// imports the same zips, so both tools read identical bytes.
func osvdbCmd(args []string) error {
	fs := flag.NewFlagSet("osvdb", flag.ExitOnError)
	out := fs.String("out", "", "output `directory`")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		return errors.New("osvdb: -out and at least one source directory are required")
	}
	type rec struct {
		name string
		data []byte
	}
	byEco := map[string][]rec{}
	for _, src := range fs.Args() {
		files, err := filepath.Glob(filepath.Join(src, "*.json"))
		if err != nil {
			return err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			var r struct {
				ID       string `json:"id"`
				Affected []struct {
					Package struct {
						Ecosystem string `json:"ecosystem"`
					} `json:"package"`
				} `json:"affected"`
			}
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			seen := map[string]bool{}
			for _, a := range r.Affected {
				eco, _, _ := strings.Cut(a.Package.Ecosystem, ":")
				if eco == "" || seen[eco] {
					continue
				}
				seen[eco] = true
				byEco[eco] = append(byEco[eco], rec{r.ID + ".json", data})
			}
		}
	}
	ecos := make([]string, 0, len(byEco))
	for eco := range byEco {
		ecos = append(ecos, eco)
	}
	sort.Strings(ecos)
	for _, eco := range ecos {
		dir := filepath.Join(*out, "osv-scalibr", eco)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, "all.zip"))
		if err != nil {
			return err
		}
		zw := zip.NewWriter(f)
		recs := byEco[eco]
		sort.Slice(recs, func(i, j int) bool { return recs[i].name < recs[j].name })
		for _, r := range recs {
			w, err := zw.Create(r.name)
			if err == nil {
				_, err = w.Write(r.data)
			}
			if err != nil {
				f.Close()
				return err
			}
		}
		if err := zw.Close(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Printf("%s: %d records\n", filepath.Join(dir, "all.zip"), len(recs))
	}
	return nil
}
