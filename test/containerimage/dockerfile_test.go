package containerimage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"
)

// Bounds for reading the repository's own Dockerfile: it is project input,
// but a runaway file should give an error, not a hang.
const (
	maxDockerfileBytes = 1 << 20
	maxInstructions    = 1000
)

// instruction is one Dockerfile instruction with its continuation lines
// joined, e.g. {Cmd: "RUN", Args: "go build ./cmd/portcullis"}.
type instruction struct {
	Cmd  string
	Args string
	Line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	From string // image reference, flags removed
	Name string // the AS name, "" when unnamed
	Args map[string]string
	Body []instruction
}

// parseDockerfile splits a Dockerfile into stages. It understands what this
// repository's Dockerfile uses: comments, line continuations, FROM ... AS,
// and ARG defaults; instructions before the first FROM other than ARG are
// refused.
func parseDockerfile(text string) ([]stage, error) {
	if len(text) > maxDockerfileBytes {
		return nil, fmt.Errorf("parse Dockerfile: %d bytes, more than %d", len(text), maxDockerfileBytes)
	}
	var (
		stages  []stage
		pending strings.Builder
		start   int
		count   int
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), maxDockerfileBytes)
	lineNo := 0
	flush := func() error {
		raw := strings.TrimSpace(pending.String())
		pending.Reset()
		if raw == "" {
			return nil
		}
		count++
		if count > maxInstructions {
			return fmt.Errorf("parse Dockerfile: more than %d instructions", maxInstructions)
		}
		cmd, args, _ := strings.Cut(raw, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		switch {
		case in.Cmd == "FROM":
			words := strings.Fields(in.Args)
			var ref []string
			for _, w := range words {
				if !strings.HasPrefix(w, "--") {
					ref = append(ref, w)
				}
			}
			st := stage{Args: map[string]string{}}
			switch {
			case len(ref) == 1:
				st.From = ref[0]
			case len(ref) == 3 && strings.EqualFold(ref[1], "AS"):
				st.From, st.Name = ref[0], ref[2]
			default:
				return fmt.Errorf("parse Dockerfile line %d: FROM %q: want IMAGE [AS NAME]", in.Line, in.Args)
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.Cmd == "ARG":
			// A global ARG only feeds FROM lines; this Dockerfile uses none.
		case len(stages) == 0:
			return fmt.Errorf("parse Dockerfile line %d: %s before the first FROM", in.Line, in.Cmd)
		default:
			st := &stages[len(stages)-1]
			if in.Cmd == "ARG" {
				for _, a := range strings.Fields(in.Args) {
					name, def, _ := strings.Cut(a, "=")
					st.Args[name] = strings.Trim(def, `"`)
				}
			}
			st.Body = append(st.Body, in)
		}
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments (and parser directives) are not instructions
		}
		if pending.Len() == 0 {
			start = lineNo
		}
		if cont, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			pending.WriteString(cont)
			pending.WriteByte(' ')
			continue
		}
		pending.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse Dockerfile: %w", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("parse Dockerfile: no FROM")
	}
	return stages, nil
}

// find returns the instructions of st named cmd.
func (st stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range st.Body {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes the JSON array form of CMD, ENTRYPOINT and VOLUME.
func execForm(in instruction) ([]string, error) {
	var words []string
	if err := json.Unmarshal([]byte(in.Args), &words); err != nil {
		return nil, fmt.Errorf("line %d: %s %s: want the JSON array form: %w", in.Line, in.Cmd, in.Args, err)
	}
	return words, nil
}

// labels returns the key=value pairs of every LABEL instruction of st.
func (st stage) labels() (map[string]string, error) {
	out := map[string]string{}
	for _, in := range st.find("LABEL") {
		words, err := shellWords(in.Args)
		if err != nil {
			return nil, fmt.Errorf("line %d: LABEL: %w", in.Line, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: LABEL %q: want key=value", in.Line, w)
			}
			out[k] = v
		}
	}
	return out, nil
}

// expandArgs replaces $NAME, ${NAME} and ${NAME:-default} with vars, as the
// shell of a RUN instruction would for build arguments.
func expandArgs(s string, vars map[string]string) string {
	return os.Expand(s, func(name string) string {
		name, def, hasDef := strings.Cut(name, ":-")
		if v, ok := vars[name]; ok && (v != "" || !hasDef) {
			return v
		}
		return def
	})
}

// shellWords splits a simple shell command line into words: quotes and
// backslash escapes are honoured; operators that would make it more than one
// command (&&, ||, ;, |, redirections, substitutions) are refused, so a test
// that runs the words runs what the Dockerfile runs.
func shellWords(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			case '`':
				return nil, fmt.Errorf("command substitution in %q", s)
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("&|;<>`()", r):
			return nil, fmt.Errorf("shell operator %q in %q: keep it one simple command", r, s)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ignoredBy reports which .dockerignore pattern excludes rel (a slash
// separated path relative to the build context), or "" when none does.
// It covers the forms this repository uses: plain paths (a directory
// excludes what is under it), a leading "/", "**/" prefixes and path.Match
// globs; "!" exceptions re-include.
func ignoredBy(patterns []string, rel string) string {
	hit := ""
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.Trim(path.Clean("/"+p), "/")
		if p == "" {
			continue
		}
		if matchPattern(p, rel) {
			if neg {
				hit = ""
			} else {
				hit = p
			}
		}
	}
	return hit
}

func matchPattern(pattern, rel string) bool {
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		parts := strings.Split(rel, "/")
		for i := range parts {
			if matchPattern(rest, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	// A pattern matches the path or any of its leading directories.
	for p := rel; p != "." && p != ""; p = path.Dir(p) {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
		if !strings.Contains(p, "/") {
			break
		}
	}
	return false
}

// readIgnore returns the patterns of a .dockerignore file.
func readIgnore(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
