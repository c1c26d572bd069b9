package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

type setFlags map[string]string

func (s setFlags) String() string { return fmt.Sprint(map[string]string(s)) }
func (s setFlags) Set(v string) error {
	src, ver, ok := strings.Cut(v, "=")
	if !ok || src == "" || ver == "" {
		return fmt.Errorf("want SOURCE=VERSION, got %q", v)
	}
	s[src] = ver
	return nil
}

// statusCmd rewrites a dpkg status file so that every binary package built
// from a given source package has that source at another version, keeping
// each binary's own epoch: bsdutils "1:2.38.1-5+deb12u3" from util-linux
// "2.38.1-5+deb12u3" becomes "1:2.36.1-7" from util-linux "2.36.1-7". It
// makes the synthetic "aged" image whose findings depend on version order.
func statusCmd(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	in := fs.String("in", "", "dpkg status `file` to read")
	out := fs.String("out", "", "`file` to write")
	set := setFlags{}
	fs.Var(set, "set", "`SOURCE=VERSION` (repeatable)")
	fs.Parse(args)
	if *in == "" || *out == "" || len(set) == 0 {
		return errors.New("status: -in, -out and -set are required")
	}
	data, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	body := strings.TrimRight(string(data), "\n")
	trailing := string(data)[len(body):]
	paras := strings.Split(body, "\n\n")
	changed := 0
	for i, p := range paras {
		lines := strings.Split(p, "\n")
		var name, source, version string
		vIdx, sIdx := -1, -1
		for j, l := range lines {
			switch {
			case strings.HasPrefix(l, "Package: "):
				name = strings.TrimPrefix(l, "Package: ")
			case strings.HasPrefix(l, "Source: "):
				source, sIdx = strings.TrimPrefix(l, "Source: "), j
			case strings.HasPrefix(l, "Version: "):
				version, vIdx = strings.TrimPrefix(l, "Version: "), j
			}
		}
		srcName, _, _ := strings.Cut(source, " ")
		if srcName == "" {
			srcName = name
		}
		newVer, ok := set[srcName]
		if !ok || vIdx < 0 {
			continue
		}
		epoch := ""
		if e, _, ok := strings.Cut(version, ":"); ok {
			epoch = e + ":"
		}
		lines[vIdx] = "Version: " + epoch + strings.TrimPrefix(newVer, epoch)
		if sIdx >= 0 && strings.Contains(source, "(") {
			lines[sIdx] = "Source: " + srcName + " (" + newVer + ")"
		} else if epoch != "" && !strings.HasPrefix(newVer, epoch) {
			if sIdx >= 0 {
				lines[sIdx] = "Source: " + srcName + " (" + newVer + ")"
			} else {
				lines = append(lines, "Source: "+srcName+" ("+newVer+")")
			}
		}
		paras[i] = strings.Join(lines, "\n")
		changed++
	}
	if changed == 0 {
		return errors.New("status: no package matched")
	}
	fmt.Fprintf(os.Stderr, "status: %d packages set to older versions\n", changed)
	return os.WriteFile(*out, []byte(strings.Join(paras, "\n\n")+trailing), 0o644)
}
