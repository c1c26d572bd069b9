package containerimage

import (
	"strings"
	"testing"
)

// FuzzDockerfileParsers: the parsers the image test reads the Dockerfile
// with return an error or a result for any text, never panic or loop.
func FuzzDockerfileParsers(f *testing.F) {
	for _, seed := range []string{
		"FROM a AS build\nARG X=1\nRUN CGO_ENABLED=0 go build -ldflags=\"-X main.v=${X}\" -o /out/p ./cmd/p\nFROM scratch\nUSER 1:1\nCMD [\"serve\"]\n",
		"# c\nFROM --platform=$BUILDPLATFORM img\\\n AS b\nLABEL a=\"b c\" \\\n  d='e'\n",
		"RUN x\n",
		"FROM a b c d\n",
		"FROM a\nRUN echo \"unterminated\n",
		"FROM a\nRUN a && b | c\n",
		"FROM a\nRUN ${A:-${B}} $C '\\' \"\\\"\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		stages, err := parseDockerfile(text)
		if err == nil && len(stages) == 0 {
			t.Fatal("no error and no stage")
		}
		for _, st := range stages {
			if _, err := st.labels(); err != nil {
				continue
			}
			for _, in := range st.Body {
				words, err := shellWords(expandArgs(in.Args, st.Args))
				if err == nil && strings.TrimSpace(in.Args) == "" && len(words) != 0 {
					t.Fatalf("words %q from blank arguments", words)
				}
				_, _ = execForm(in)
			}
		}
		_ = ignoredBy(readIgnore(text), "a/b/c")
	})
}
