package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Message writes the decision's reasons as one line for a client's error
// output, most severe first, e.g.
//
//	2 fixable HIGH vulnerabilities (CVE-2024-0001 openssl 3.0.1 → 3.0.8, …); not signed by an allowed identity; newer release 1.4.7 available
//
// Clients print a registry's error message on one line and some cut it, so
// the line is kept within max bytes (max <= 0: no limit). Naming every
// reason matters more than detail: each reason is "headline (details)", so
// first as many headlines as fit are chosen (the rest are counted, "; +2
// more"), then each chosen reason, most severe first, gets back as many
// detail items as still fit. The result is valid UTF-8 even when a single
// headline has to be cut.
func (d Decision) Message(max int) string {
	msgs := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		msgs[i] = r.Message
	}
	full := strings.Join(msgs, "; ")
	if max <= 0 || len(full) <= max {
		return full
	}
	forms := make([][]string, len(msgs)) // longest first
	pick := make([]int, len(msgs))       // chosen form of each reason
	for i, m := range msgs {
		forms[i] = shortenings(m)
		pick[i] = len(forms[i]) - 1
	}
	render := func(k int) string {
		parts := make([]string, 0, k+1)
		for i := range k {
			parts = append(parts, forms[i][pick[i]])
		}
		if k < len(msgs) {
			parts = append(parts, fmt.Sprintf("+%d more", len(msgs)-k))
		}
		return strings.Join(parts, "; ")
	}
	k := len(msgs)
	for k > 0 && len(render(k)) > max {
		k--
	}
	if k == 0 {
		// Not even one headline with the count: the most severe headline
		// alone, cut if need be.
		return cut(forms[0][len(forms[0])-1], max)
	}
	for i := range k {
		for f := range forms[i] {
			old := pick[i]
			if pick[i] = f; len(render(k)) <= max {
				break
			}
			pick[i] = old
		}
	}
	return render(k)
}

// shortenings lists a message from longest to shortest form: whole, then
// with fewer detail items ("(a, b, …)"), then the headline alone.
func shortenings(m string) []string {
	out := []string{m}
	head, details, ok := strings.Cut(m, " (")
	if !ok || !strings.HasSuffix(details, ")") {
		return out
	}
	items := strings.Split(strings.TrimSuffix(details, ")"), ", ")
	for k := len(items) - 1; k >= 1; k-- {
		if items[k-1] == "…" || strings.HasPrefix(items[k-1], "+") {
			continue // never end on a bare ellipsis or count
		}
		out = append(out, head+" ("+strings.Join(items[:k], ", ")+", …)")
	}
	return append(out, head)
}

// cut shortens s to at most max bytes on a rune boundary, marking the cut.
func cut(s string, max int) string {
	const ellipsis = "…"
	if len(s) <= max {
		return s
	}
	n := max - len(ellipsis)
	suffix := ellipsis
	if n < 0 {
		n, suffix = max, ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + suffix
}
