package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/portcullis/portcullis/test/bench/osvgen"
)

// osvgenCmd writes the full-size generated OSV database (osvgen.FullSize)
// as <out>/<Ecosystem>/all.zip, from directories of real records.
func osvgenCmd(args []string) error {
	fs := flag.NewFlagSet("osvgen", flag.ExitOnError)
	out := fs.String("out", "", "output `directory`")
	revision := fs.Int("revision", 0, "revise one record in every -revise-per (a daily update); 0: none")
	revisePer := fs.Int("revise-per", 100, "with -revision: revise one record in this many")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		return errors.New("osvgen: -out and at least one directory of real OSV records are required")
	}
	tmpl, err := osvgen.LoadTemplates(fs.Args()...)
	if err != nil {
		return err
	}
	shares := osvgen.FullSize()
	if err := osvgen.Check(shares, tmpl); err != nil {
		return err
	}
	paths, err := osvgen.Write(*out, shares, tmpl, osvgen.Options{Revision: *revision, RevisePer: *revisePer})
	if err != nil {
		return err
	}
	for i, p := range paths {
		fmt.Printf("%s: %d records\n", p, shares[i].Count)
	}
	return nil
}
