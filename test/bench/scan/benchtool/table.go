package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// tableCmd summarises measurement lines "IMAGE TOOL WALL_S MAXRSS_KB CPU_S"
// (one per run) as medians per image and tool, and the ratios
// portcullis / osv-scanner. Lines whose image is "setup" are one-off costs
// outside the scans, listed as they are.
func tableCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("table: one results file")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct{ image, tool string }
	type runs struct{ wall, rss, cpu []float64 }
	data := map[key]*runs{}
	var images []string
	var setup []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 5 {
			return fmt.Errorf("table: bad line %q", sc.Text())
		}
		var v [3]float64
		for i := range v {
			if v[i], err = strconv.ParseFloat(fields[2+i], 64); err != nil {
				return fmt.Errorf("table: bad line %q: %w", sc.Text(), err)
			}
		}
		if fields[0] == "setup" {
			setup = append(setup, fmt.Sprintf("%s: %.2f s wall, %.1f MB peak RSS, %.2f s CPU", fields[1], v[0], v[1]/1000, v[2]))
			continue
		}
		k := key{fields[0], fields[1]}
		if data[k] == nil {
			data[k] = &runs{}
			if !slices.Contains(images, k.image) {
				images = append(images, k.image)
			}
		}
		data[k].wall = append(data[k].wall, v[0])
		data[k].rss = append(data[k].rss, v[1]/1000)
		data[k].cpu = append(data[k].cpu, v[2])
	}
	if err := sc.Err(); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "image\ttool\truns\twall s (median)\twall s (min-max)\tpeak RSS MB (median)\tCPU s (median)\t")
	for _, img := range images {
		p, o := data[key{img, "portcullis"}], data[key{img, "osv-scanner"}]
		for _, tool := range []string{"portcullis", "osv-scanner"} {
			r := data[key{img, tool}]
			if r == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f\t%.3f-%.3f\t%.1f\t%.2f\t\n", img, tool, len(r.wall),
				median(r.wall), slices.Min(r.wall), slices.Max(r.wall), median(r.rss), median(r.cpu))
		}
		if p != nil && o != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t%.2fx\t\t%.2fx\t%.2fx\t\n", img, "portcullis/osv-scanner",
				median(p.wall)/median(o.wall), median(p.rss)/median(o.rss), median(p.cpu)/median(o.cpu))
		}
	}
	tw.Flush()
	if len(setup) > 0 {
		fmt.Println("one-off, not in the scan times:")
		for _, s := range setup {
			fmt.Println("  " + s)
		}
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
